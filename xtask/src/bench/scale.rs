//! `cargo xtask bench scale`: what a cluster of members over one Redis costs per operation, the
//! inputs of `docs/SCALING.md`'s capacity model. Two parts, each on a fresh cluster of
//! `--members` release `example-draw-channels` processes (the Draw example's server with any
//! number of channels) over a `redis-server` started here, all on loopback:
//!
//! **Channels.** `--channels` channels, channel `c` held by member `c % members`: its
//! `--subscribers` subscribers are all connected there. Each channel has two publisher
//! connections, one on the member that holds it (*local*) and one on the next member
//! (*remote*: every delivery crosses a member boundary). Each round measures, after a quiet
//! second (the members' idle CPU):
//!
//! - *foreign*: only member 0's channels are published, through member 0, at `--rate`
//!   messages/s: the other members hold no subscriber of any of them, so all their CPU time
//!   (net of idle) is spent on traffic they have no subscriber for — per published message;
//! - *local* and *remote*: every channel is published (round robin) at `--rate` messages/s in
//!   total, through the holder or through the next member.
//!
//! For each phase: deliveries/s, the delivery ratio (deliveries / (messages × subscribers): must
//! be 1.0), each member's CPU time (`/proc/<pid>/stat`) and cluster tasks received (the node's
//! `thywill_cluster_tasks_total{direction="in"}` on `/channels/metrics`), and redis-server's CPU
//! time and network bytes (`INFO stats`) per message. A probe per channel precedes the measured
//! messages (until every subscriber has one) and another follows them: once every subscriber
//! has the last, every delivery has happened.
//!
//! **Idle connections.** `--idle` WebSocket connections (default 100,000) spread evenly over a
//! fresh cluster of `--idle-members` members (default `--members`). No process can hold more
//! connections than its open-files limit allows (raised to the hard limit, and the hard limit
//! too when privileged; children inherit it), less a margin: the connections are opened by
//! load-generator processes (this xtask again, as the hidden `bench scale-idle-client`), each
//! holding at most that many from a loopback address of its own (`127.0.0.2`, `127.0.0.3`, ...;
//! one address has ~28,000 ephemeral ports), and each member holds at most that many too: what
//! does not fit in the members is not measured, and the bench prints so (with the
//! `--idle-members` that would hold it all). The generators answer the members' keep-alive
//! pings, hold the connections until their stdin closes and are killed on every exit path.
//! Reported: each member's `VmRSS` growth per connection once it counts them all
//! (`/channels/alive`), and the generators' own.
//!
//! Medians of `--rounds` rounds. The load generator shares the machine with the servers; the
//! load average is printed before and after.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::cluster::start_redis;
use super::echo::{SHARED, WAIT, Ws, frame_type, median, ratio, spawn_server};
use crate::flags::Args;
use crate::{binary, cmd, sys};

/// The bench server (a binary of the Draw example).
const SERVER: &str = "example-draw-channels";
/// Its application id, also its base path.
const APP: &str = "channels";
/// Probe ids are below this; measured messages carry it.
const MEASURED: u64 = 1_000_000_000;
/// How long after the last message the subscribers may take to receive it.
const GRACE: Duration = Duration::from_secs(20);
/// Connections opened at once.
const CONCURRENT: usize = 200;
/// 32 bytes of payload in every published message.
const PAYLOAD: &str = "0123456789abcdef0123456789abcdef";

/// The options of `bench scale`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Options {
    members: usize,
    channels: usize,
    subscribers: usize,
    rate: u64,
    secs: u64,
    rounds: usize,
    idle: usize,
    idle_members: usize,
    sources: usize,
    quick: bool,
}

pub(crate) fn parse(args: &[String]) -> anyhow::Result<Options> {
    let mut args = Args::new(args.iter().cloned());
    let quick = args.switch("--quick");
    // --quick: small sizes, one round (well under two minutes).
    let (channels, rate, secs, rounds, idle) = if quick {
        (100, 1_000, 2, 1, 4_000)
    } else {
        (1_000, 2_000, 5, 3, 100_000)
    };
    let members = args.value_or("--members", 4)?;
    let opts = Options {
        members,
        channels: args.value_or("--channels", channels)?,
        subscribers: args.value_or("--subscribers", 2)?,
        rate: args.value_or("--rate", rate)?,
        secs: args.value_or("--secs", secs)?,
        rounds: args.value_or("--rounds", rounds)?,
        idle: args.value_or("--idle", idle)?,
        idle_members: args.value_or("--idle-members", members)?,
        sources: args.value_or("--sources", 8)?,
        quick,
    };
    args.finish()?;
    if !(2..=64).contains(&opts.members) || !(2..=64).contains(&opts.idle_members) {
        bail!("--members and --idle-members must be 2 to 64");
    }
    if opts.subscribers == 0 || opts.rate == 0 || opts.secs == 0 || opts.rounds == 0 {
        bail!("--subscribers, --rate, --secs and --rounds must be at least 1");
    }
    if opts.sources == 0 || opts.sources > 250 {
        bail!("--sources must be 1 to 250");
    }
    if opts.channels > 0 && opts.channels < opts.members {
        bail!("--channels must be 0 (skip) or at least --members");
    }
    Ok(opts)
}

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let opts = parse(args)?;
    super::release_binary(SERVER)?;
    // This process holds the channels part's connections; the idle part's are held by load
    // generators and members, each up to the limit (inherited), which is raised for them when
    // privileged: the idle part measures what fits (and says so).
    let channels_needed = (opts.channels * (opts.subscribers + 2)) as u64 + FD_MARGIN;
    let needed = channels_needed.max(opts.idle.div_ceil(opts.idle_members) as u64 + FD_MARGIN);
    let limit = sys::raise_open_files_to(needed).context("cannot raise the open-files limit")?;
    if limit < channels_needed {
        bail!(
            "the channels part needs about {channels_needed} open files, the limit is {limit} (run as root to raise it)"
        );
    }
    super::block_on_interruptible(bench(&opts, limit))
}

async fn bench(opts: &Options, limit: u64) -> anyhow::Result<()> {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "bench scale{}: {} members over one redis-server; channels part: {} channels (channel c held by member c % {}), \
         {} subscribers each, {} messages/s for {} s per phase, {} rounds (medians shown); idle part: {} connections \
         requested over {} members; {cpus} CPUs; load {}; {SHARED}",
        if opts.quick { " --quick" } else { "" },
        opts.members,
        opts.channels,
        opts.members,
        opts.subscribers,
        opts.rate,
        opts.secs,
        opts.rounds,
        opts.idle,
        opts.idle_members,
        load_average()
    );
    let mut failures = Vec::new();
    if opts.channels > 0 {
        let mut rounds = Vec::new();
        for round in 1..=opts.rounds {
            println!("round {round} of {}", opts.rounds);
            let r = channels_round(opts)
                .await
                .with_context(|| format!("channels, round {round}"))?;
            rounds.push(r);
        }
        println!();
        print!("{}", channels_table(opts, &rounds));
        for r in &rounds {
            for (name, p) in ["foreign", "local", "remote"].into_iter().zip(r.phases()) {
                if p.ratio() != 1.0 {
                    failures.push(format!("{name}: delivery ratio {:.4}", p.ratio()));
                }
            }
        }
    }
    if opts.idle > 0 {
        println!();
        idle_part(opts, limit).await.context("idle connections")?;
    }
    println!("\nload {} (1, 5, 15 min) at the end", load_average());
    if !failures.is_empty() {
        bail!("not every message was delivered once: {}", failures.join("; "));
    }
    Ok(())
}

/// `/proc/loadavg`'s three averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// A running cluster: redis-server and the members.
struct Cluster {
    redis: Child,
    redis_addr: SocketAddr,
    members: Vec<(Child, SocketAddr)>,
}

impl Cluster {
    async fn start(count: usize, max_connections: usize) -> anyhow::Result<Cluster> {
        let (redis, url) = start_redis().await?;
        let redis_addr: SocketAddr = url
            .strip_prefix("redis://")
            .and_then(|a| a.parse().ok())
            .with_context(|| format!("unexpected Redis URL {url}"))?;
        let ids: Vec<String> = (0..count).map(|i| format!("m{i}")).collect();
        let list = ids.join(",");
        let server = binary(SERVER, true);
        let mut members = Vec::with_capacity(count);
        for id in &ids {
            let mut c = cmd(&server);
            c.args(["--port", "0", "--member", id, "--cluster", "redis"])
                .args(["--redis-url", &url, "--cluster-members", &list])
                .env("RUST_LOG", "warn")
                // Loopback processes of a bench, which needs root for its open-files limit.
                .env("THYWILL_PROCESS__ALLOW_ROOT", "true")
                .env("THYWILL_LIMITS__MAX_CONNECTIONS", max_connections.to_string())
                .env(
                    "THYWILL_LIMITS__MAX_SOCKETS",
                    (max_connections + 1_000).to_string(),
                );
            members.push(spawn_server(c, id).await?);
        }
        Ok(Cluster {
            redis,
            redis_addr,
            members,
        })
    }

    fn url(&self, member: usize) -> String {
        format!("ws://{}/{APP}/ws", self.members[member].1)
    }

    /// Every member's CPU time and cluster tasks received, and redis-server's CPU time.
    async fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let mut cpu = Vec::new();
        let mut tasks_in = Vec::new();
        for (child, addr) in &self.members {
            cpu.push(sys::cpu_time(child.id().context("a member exited")?)?.as_secs_f64());
            tasks_in.push(tasks_received(*addr).await?);
        }
        let redis = sys::cpu_time(self.redis.id().context("redis-server exited")?)?.as_secs_f64();
        let (redis_in, redis_out) = redis_net_bytes(self.redis_addr).await?;
        Ok(Snapshot {
            at: Instant::now(),
            cpu,
            tasks_in,
            redis,
            redis_in,
            redis_out,
        })
    }

    async fn stop(mut self) {
        // All at once: members stopped one by one would see the others go down.
        for pid in self.members.iter().filter_map(|(c, _)| c.id()) {
            let _ = sys::send_signal(pid, libc::SIGTERM);
        }
        for (child, _) in &mut self.members {
            let _ = sys::stop(child, Duration::from_secs(10)).await;
        }
        let _ = sys::stop(&mut self.redis, Duration::from_secs(10)).await;
    }
}

#[derive(Clone, Debug)]
struct Snapshot {
    at: Instant,
    cpu: Vec<f64>,
    tasks_in: Vec<u64>,
    redis: f64,
    /// Redis's `total_net_input_bytes` and `total_net_output_bytes`.
    redis_in: u64,
    redis_out: u64,
}

/// Redis's network bytes so far, in and out (`INFO stats`, over a connection of its own: its
/// own bytes are a few hundred per call).
async fn redis_net_bytes(addr: SocketAddr) -> anyhow::Result<(u64, u64)> {
    let info = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"INFO stats\r\n").await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                bail!("redis closed the connection");
            }
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf);
            if let Some((head, body)) = text.split_once("\r\n")
                && let Some(len) = head.strip_prefix('$').and_then(|l| l.parse::<usize>().ok())
                && body.len() >= len
            {
                return anyhow::Ok(body[..len].to_owned());
            }
        }
    };
    let info = timeout(WAIT, info).await.context("redis INFO timed out")??;
    let field = |name: &str| {
        info.lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .strip_prefix(':')?
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .with_context(|| format!("no {name} in INFO stats"))
    };
    Ok((field("total_net_input_bytes")?, field("total_net_output_bytes")?))
}

/// A bare HTTP/1.0 GET of `path` on a member; the body.
async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let get = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        anyhow::Ok(response)
    };
    let response = timeout(WAIT, get)
        .await
        .with_context(|| format!("{path} did not answer"))??;
    match response.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200") => {
            Ok(body.to_owned())
        }
        _ => bail!("{path}: {}", response.lines().next().unwrap_or("no answer")),
    }
}

/// The member's `thywill_cluster_tasks_total{direction="in"}` (0 before the first task).
async fn tasks_received(addr: SocketAddr) -> anyhow::Result<u64> {
    Ok(parse_tasks_in(&http_get(addr, &format!("/{APP}/metrics")).await?))
}

fn parse_tasks_in(metrics: &str) -> u64 {
    metrics
        .lines()
        .map(|l| l.strip_prefix("thywill_").unwrap_or(l))
        .filter(|l| l.starts_with("cluster_tasks_total{") && l.contains("direction=\"in\""))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// The member's connection count (`/channels/alive`).
async fn connections(addr: SocketAddr) -> anyhow::Result<u64> {
    let body = http_get(addr, &format!("/{APP}/alive")).await?;
    let value: serde_json::Value = serde_json::from_str(&body).context("/alive: not JSON")?;
    value
        .get("connections")
        .and_then(serde_json::Value::as_u64)
        .context("/alive: no connection count")
}

/// Opens a WebSocket to `url` (a member at `addr`) from `source` and awaits the welcome frame.
async fn connect(addr: SocketAddr, url: &str, source: Ipv4Addr) -> anyhow::Result<Ws> {
    let open = async {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::V4(SocketAddrV4::new(source, 0)))?;
        let stream = socket.connect(addr).await?;
        stream.set_nodelay(true)?;
        // Small buffers (tungstenite reads into 128 KiB by default): the client holds up to
        // `--idle` connections.
        let config = WebSocketConfig::default().read_buffer_size(4 * 1024);
        let (mut ws, _) =
            tokio_tungstenite::client_async_with_config(url, MaybeTlsStream::Plain(stream), Some(config))
                .await?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) if frame_type(&text).as_deref() == Some("welcome") => {
                    return anyhow::Ok(ws);
                }
                Some(Ok(Message::Text(text))) => bail!("expected a welcome frame, got {text}"),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => bail!("the connection ended before its welcome"),
            }
        }
    };
    timeout(WAIT, open).await.context("connecting timed out")?
}

/// The loopback source address of connection `i`: `127.0.0.2` onwards, round robin.
fn source(i: usize, sources: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 2 + (i % sources) as u8)
}

/// A frame of the `channels` application carrying `data`.
fn frame(data: &serde_json::Value) -> Message {
    Message::text(format!(r#"{{"t":"msg","app":"{APP}","data":{data},"_":{{}}}}"#))
}

fn publication(channel: usize, id: u64) -> Message {
    frame(&serde_json::json!({ "pub": format!("c{channel}"), "id": id, "x": PAYLOAD }))
}

/// The `id` of the data of a delivered message, found without parsing the whole frame.
fn delivered_id(text: &str) -> Option<u64> {
    let data = text.find("\"data\":")?;
    let at = data + text[data..].find("\"id\":")? + 5;
    let digits = &text[at..];
    let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// One subscriber: connects, subscribes to `channel`, awaits the confirmation, then counts
/// measured deliveries into `delivered` and records the last probe in `seen`.
async fn subscriber(
    addr: SocketAddr,
    url: String,
    src: Ipv4Addr,
    channel: usize,
    seen: Arc<AtomicU64>,
    delivered: Arc<AtomicU64>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut ws = connect(addr, &url, src).await?;
    ws.send(frame(&serde_json::json!({ "sub": format!("c{channel}") })))
        .await?;
    timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.contains("\"subscribed\"") => return anyhow::Ok(()),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => bail!("closed before the subscription was confirmed"),
            }
        }
    })
    .await
    .context("no subscription confirmation")??;
    Ok(tokio::spawn(async move {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Text(text) = m
                && let Some(id) = delivered_id(&text)
            {
                if id >= MEASURED {
                    delivered.fetch_add(1, Ordering::Relaxed);
                } else {
                    seen.fetch_max(id, Ordering::Relaxed);
                }
            }
        }
    }))
}

/// A publisher connection, driven by a task that writes what it is given and reads (so that
/// pings are answered) what the member sends it.
async fn publisher(addr: SocketAddr, url: String, src: Ipv4Addr) -> anyhow::Result<mpsc::Sender<Message>> {
    let ws = connect(addr, &url, src).await?;
    let (out, mut queue) = mpsc::channel::<Message>(256);
    let (mut tx, mut rx) = ws.split();
    tokio::spawn(async move {
        loop {
            let sent = tokio::select! {
                m = queue.recv() => match m {
                    Some(m) => tx.send(m).await,
                    None => break,
                },
                m = rx.next() => match m {
                    Some(Ok(_)) => Ok(()),
                    Some(Err(_)) | None => break,
                },
            };
            if sent.is_err() {
                break;
            }
        }
    });
    Ok(out)
}

/// Runs `tasks` with at most [`CONCURRENT`] at once; their results in order.
async fn in_batches<T: Send + 'static>(
    tasks: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<T>> + Send>>>,
    concurrent: usize,
) -> anyhow::Result<Vec<T>> {
    let total = tasks.len();
    let mut out: Vec<Option<T>> = (0..total).map(|_| None).collect();
    let mut pending = tasks.into_iter().enumerate();
    let mut running = JoinSet::new();
    loop {
        while running.len() < concurrent.max(1) {
            let Some((i, t)) = pending.next() else { break };
            running.spawn(async move { (i, t.await) });
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        let (i, r) = done?;
        out[i] = Some(r.with_context(|| format!("connection {} of {total}", i + 1))?);
    }
    out.into_iter()
        .map(|o| o.context("a connection was not opened"))
        .collect()
}

/// What one phase measured.
#[derive(Clone, Debug)]
struct Phase {
    messages: u64,
    deliveries: u64,
    expected: u64,
    window: f64,
    /// Per member: CPU seconds, tasks received, messages published on channels it holds (their
    /// subscribers are all there).
    cpu: Vec<f64>,
    tasks_in: Vec<u64>,
    held: Vec<u64>,
    redis_cpu: f64,
    /// Bytes into and out of Redis.
    redis_in: u64,
    redis_out: u64,
}

impl Phase {
    fn ratio(&self) -> f64 {
        self.deliveries as f64 / self.expected.max(1) as f64
    }
    fn deliveries_per_sec(&self) -> f64 {
        self.deliveries as f64 / self.window.max(1e-9)
    }
    fn messages_per_sec(&self) -> f64 {
        self.messages as f64 / self.window.max(1e-9)
    }
    fn members_cpu(&self) -> f64 {
        self.cpu.iter().sum()
    }
}

/// What one round measured.
#[derive(Clone, Debug)]
struct Round {
    /// Each member's idle CPU seconds per second.
    idle: Vec<f64>,
    foreign: Phase,
    local: Phase,
    remote: Phase,
}

impl Round {
    fn phases(&self) -> [&Phase; 3] {
        [&self.foreign, &self.local, &self.remote]
    }
}

/// The connections of a channels round.
struct Load {
    holder: Vec<usize>,
    seen: Vec<Vec<Arc<AtomicU64>>>,
    delivered: Arc<AtomicU64>,
    local: Vec<mpsc::Sender<Message>>,
    remote: Vec<mpsc::Sender<Message>>,
    next_probe: u64,
}

async fn channels_round(opts: &Options) -> anyhow::Result<Round> {
    let cluster = Cluster::start(opts.members, 100_000).await?;
    let result = channels_measure(opts, &cluster).await;
    cluster.stop().await;
    result
}

async fn channels_measure(opts: &Options, cluster: &Cluster) -> anyhow::Result<Round> {
    let m = opts.members;
    let started = Instant::now();
    let holder: Vec<usize> = (0..opts.channels).map(|c| c % m).collect();
    let seen: Vec<Vec<Arc<AtomicU64>>> = (0..opts.channels)
        .map(|_| {
            (0..opts.subscribers)
                .map(|_| Arc::new(AtomicU64::new(0)))
                .collect()
        })
        .collect();
    let delivered = Arc::new(AtomicU64::new(0));
    let mut subs: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>> = Vec::new();
    let mut pubs: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>> = Vec::new();
    let mut n = 0;
    for c in 0..opts.channels {
        let h = holder[c];
        for s in &seen[c] {
            let (addr, url) = (cluster.members[h].1, cluster.url(h));
            subs.push(Box::pin(subscriber(
                addr,
                url,
                source(n, opts.sources),
                c,
                s.clone(),
                delivered.clone(),
            )));
            n += 1;
        }
        for member in [h, (h + 1) % m] {
            let (addr, url) = (cluster.members[member].1, cluster.url(member));
            pubs.push(Box::pin(publisher(addr, url, source(n, opts.sources))));
            n += 1;
        }
    }
    let readers = in_batches(subs, CONCURRENT).await?;
    let mut senders = in_batches(pubs, CONCURRENT).await?.into_iter();
    let (mut local, mut remote) = (Vec::new(), Vec::new());
    while let (Some(l), Some(r)) = (senders.next(), senders.next()) {
        local.push(l);
        remote.push(r);
    }
    eprintln!(
        "  {n} connections opened in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut load = Load {
        holder,
        seen,
        delivered,
        local,
        remote,
        next_probe: 1,
    };
    let all: Vec<usize> = (0..opts.channels).collect();
    let of_member_0: Vec<usize> = all.iter().copied().filter(|c| load.holder[*c] == 0).collect();

    // Probe every channel both ways once, then a quiet second: the members' idle CPU.
    warm_up(&mut load, &all, false).await?;
    warm_up(&mut load, &all, true).await?;
    let before = cluster.snapshot().await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = cluster.snapshot().await?;
    let secs = after.at.duration_since(before.at).as_secs_f64();
    let idle: Vec<f64> = before
        .cpu
        .iter()
        .zip(&after.cpu)
        .map(|(b, a)| (a - b) / secs)
        .collect();

    let foreign = phase(opts, cluster, &mut load, &of_member_0, false).await?;
    report("foreign", &foreign);
    let local = phase(opts, cluster, &mut load, &all, false).await?;
    report("local", &local);
    let remote = phase(opts, cluster, &mut load, &all, true).await?;
    report("remote", &remote);
    for r in readers {
        r.abort();
    }
    Ok(Round {
        idle,
        foreign,
        local,
        remote,
    })
}

fn report(name: &str, p: &Phase) {
    println!(
        "  {name:<8} {:>8} messages {:>9} deliveries  ratio {:.4}  {:>8.0} deliveries/s  members CPU {:.2} s  \
         redis CPU {:.2} s  tasks in {:?}",
        p.messages,
        p.deliveries,
        p.ratio(),
        p.deliveries_per_sec(),
        p.members_cpu(),
        p.redis_cpu,
        p.tasks_in
    );
}

/// Sends a probe on each of `channels` until every subscriber of them has one (within
/// [`WAIT`]); returns the last probe's id.
async fn warm_up(load: &mut Load, channels: &[usize], remote: bool) -> anyhow::Result<u64> {
    let deadline = Instant::now() + WAIT;
    loop {
        let id = load.next_probe;
        load.next_probe += 1;
        for &c in channels {
            let tx = if remote { &load.remote[c] } else { &load.local[c] };
            tx.send(publication(c, id)).await.context("a publisher closed")?;
        }
        let wait_until = (Instant::now() + Duration::from_secs(2)).min(deadline);
        loop {
            let missing = channels
                .iter()
                .flat_map(|c| &load.seen[*c])
                .filter(|s| s.load(Ordering::Relaxed) < id)
                .count();
            if missing == 0 {
                return Ok(id);
            }
            if Instant::now() >= deadline {
                bail!("{missing} subscribers received no probe within {WAIT:?}");
            }
            if Instant::now() >= wait_until {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Publishes on `channels` (round robin) at `--rate` for `--secs`, through the holders or
/// through the next members, between two probes.
async fn phase(
    opts: &Options,
    cluster: &Cluster,
    load: &mut Load,
    channels: &[usize],
    remote: bool,
) -> anyhow::Result<Phase> {
    warm_up(load, channels, remote).await?;
    let before = cluster.snapshot().await?;
    let delivered_before = load.delivered.load(Ordering::Relaxed);
    let total = opts.rate * opts.secs;
    let mut held = vec![0u64; opts.members];
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut sent = 0u64;
    while sent < total {
        tick.tick().await;
        let due = ((started.elapsed().as_secs_f64() * opts.rate as f64) as u64 + 1).min(total);
        while sent < due {
            let c = channels[(sent % channels.len() as u64) as usize];
            let tx = if remote { &load.remote[c] } else { &load.local[c] };
            let m = publication(c, MEASURED + sent);
            if let Err(mpsc::error::TrySendError::Full(m)) = tx.try_send(m) {
                tx.send(m).await.context("a publisher closed")?;
            }
            held[load.holder[c]] += 1;
            sent += 1;
        }
    }
    let window = started.elapsed().as_secs_f64();
    // The closing probe follows every measured message on its channel.
    let barrier = load.next_probe;
    load.next_probe += 1;
    for &c in channels {
        let tx = if remote { &load.remote[c] } else { &load.local[c] };
        tx.send(publication(c, barrier))
            .await
            .context("a publisher closed")?;
    }
    let grace_end = Instant::now() + GRACE;
    loop {
        let missing = channels
            .iter()
            .flat_map(|c| &load.seen[*c])
            .filter(|s| s.load(Ordering::Relaxed) < barrier)
            .count();
        if missing == 0 {
            break;
        }
        if Instant::now() >= grace_end {
            eprintln!("  {missing} subscribers did not receive the closing probe within {GRACE:?}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = cluster.snapshot().await?;
    let deliveries = load.delivered.load(Ordering::Relaxed) - delivered_before;
    Ok(Phase {
        messages: sent,
        deliveries,
        expected: sent * opts.subscribers as u64,
        window,
        cpu: after.cpu.iter().zip(&before.cpu).map(|(a, b)| a - b).collect(),
        tasks_in: after
            .tasks_in
            .iter()
            .zip(&before.tasks_in)
            .map(|(a, b)| a.saturating_sub(*b))
            .collect(),
        held,
        redis_cpu: after.redis - before.redis,
        redis_in: after.redis_in.saturating_sub(before.redis_in),
        redis_out: after.redis_out.saturating_sub(before.redis_out),
    })
}

/// Microseconds, one decimal.
fn us(seconds: f64) -> String {
    format!("{:.1} µs", seconds * 1e6)
}

/// The channels part's tables (medians over rounds) and the per-operation costs.
fn channels_table(opts: &Options, rounds: &[Round]) -> String {
    let m = opts.members;
    let of = |f: &dyn Fn(&Round) -> f64| median(rounds.iter().map(f).collect());
    let mut out = String::new();

    // Foreign: member 0 holds every channel published; the others hold none of them.
    let holder_cost = of(&|r| (r.foreign.cpu[0] - r.idle[0] * r.foreign.window) / r.foreign.messages as f64);
    let foreign_cost = of(&|r| {
        median(
            (1..m)
                .map(|i| {
                    (r.foreign.cpu[i] - r.idle[i] * r.foreign.window).max(0.0) / r.foreign.messages as f64
                })
                .collect(),
        )
    });
    let foreign_tasks = of(&|r| {
        median(
            (1..m)
                .map(|i| r.foreign.tasks_in[i] as f64 / r.foreign.messages as f64)
                .collect(),
        )
    });
    let idle = of(&|r| median(r.idle.clone()));
    out.push_str(&format!(
        "foreign phase (only member 0's channels published, through member 0, {:.0} messages/s):\n\
         \x20 member 0 (holds them, {} subscribers each): {} CPU per message (publish + {} deliveries), net of idle\n\
         \x20 members 1..{} (hold none of them): {} CPU per message net of idle, {:.2} cluster tasks received per message\n\
         \x20 idle CPU of a member: {:.2} ms/s\n\n",
        of(&|r| r.foreign.messages_per_sec()),
        opts.subscribers,
        us(holder_cost),
        opts.subscribers,
        m - 1,
        us(foreign_cost),
        foreign_tasks,
        idle * 1e3,
    ));

    out.push_str(&format!(
        "{:<8} {:>11} {:>13} {:>8} {:>20} {:>19} {:>19} {:>17}\n",
        "phase",
        "messages/s",
        "deliveries/s",
        "ratio",
        "members CPU/delivery",
        "redis CPU/message",
        "tasks in/message",
        "members CPU cores"
    ));
    for (k, name) in ["foreign", "local", "remote"].into_iter().enumerate() {
        let ph: Vec<&Phase> = rounds.iter().map(|r| r.phases()[k]).collect();
        let med = |f: &dyn Fn(&Phase) -> f64| median(ph.iter().map(|p| f(p)).collect());
        let worst = ph.iter().map(|p| p.ratio()).fold(f64::INFINITY, f64::min);
        out.push_str(&format!(
            "{:<8} {:>11.0} {:>13.0} {:>8.4} {:>20} {:>19} {:>17.0} {:>17.0} {:>17.2} {:>18.2}\n",
            name,
            med(&Phase::messages_per_sec),
            med(&Phase::deliveries_per_sec),
            worst,
            us(med(&|p| p.members_cpu() / p.deliveries.max(1) as f64)),
            us(med(&|p| p.redis_cpu / p.messages.max(1) as f64)),
            med(&|p| p.redis_in as f64 / p.messages.max(1) as f64),
            med(&|p| p.redis_out as f64 / p.messages.max(1) as f64),
            med(&|p| p.tasks_in.iter().sum::<u64>() as f64 / p.messages.max(1) as f64),
            med(&|p| p.members_cpu() / p.window),
        ));
    }
    out.push_str(&format!(
        "remote / local: deliveries/s {}, members CPU per delivery {}, redis CPU per message {}\n\n",
        ratio(
            of(&|r| r.remote.deliveries_per_sec()),
            of(&|r| r.local.deliveries_per_sec())
        ),
        ratio(
            of(&|r| r.remote.members_cpu() / r.remote.deliveries.max(1) as f64),
            of(&|r| r.local.members_cpu() / r.local.deliveries.max(1) as f64)
        ),
        ratio(
            of(&|r| r.remote.redis_cpu / r.remote.messages.max(1) as f64),
            of(&|r| r.local.redis_cpu / r.local.messages.max(1) as f64)
        ),
    ));

    // Per member, local phase: how much of its CPU went to traffic it holds no subscriber of.
    out.push_str(&format!(
        "local phase, per member: cluster tasks received for channels it holds no subscriber of, and their CPU \
         (those tasks x {} per task, the foreign phase's cost):\n",
        us(foreign_cost)
    ));
    out.push_str(&format!(
        "{:<8} {:>10} {:>15} {:>12} {:>16} {:>22} {:>14}\n",
        "member",
        "CPU cores",
        "own messages/s",
        "tasks in/s",
        "foreign tasks/s",
        "foreign CPU cores",
        "foreign share"
    ));
    for i in 0..m {
        let cores = of(&|r| r.local.cpu[i] / r.local.window);
        let tasks = of(&|r| r.local.tasks_in[i] as f64 / r.local.window);
        let own = of(&|r| r.local.held[i] as f64 / r.local.window);
        // Through the holder, a member's own channels' messages reach it without a cluster task:
        // every task it receives is for a channel it holds no subscriber of.
        let foreign = of(&|r| r.local.tasks_in[i] as f64 / r.local.window);
        let foreign_cores = foreign * foreign_cost;
        out.push_str(&format!(
            "{:<8} {:>10.3} {:>15.0} {:>12.0} {:>16.0} {:>22.3} {:>13.0}%\n",
            format!("m{i}"),
            cores,
            own,
            tasks,
            foreign,
            foreign_cores,
            if cores > 0.0 {
                100.0 * foreign_cores / cores
            } else {
                0.0
            }
        ));
    }
    out
}

/// Descriptors a member or a load generator keeps besides its idle connections (listener,
/// Redis and cluster connections, the runtime's, pipes, `/alive` requests).
const FD_MARGIN: u64 = 1_000;

/// How the idle part's connections are spread over members and load-generator processes, each
/// holding at most what its open-files limit allows.
#[derive(Clone, Debug, PartialEq)]
struct IdlePlan {
    /// `--idle`.
    requested: usize,
    /// Measured: `requested`, or what `members` processes can hold if that is less.
    measured: usize,
    /// `--idle-members`.
    members: usize,
    /// Connections one process can hold: its open-files limit less [`FD_MARGIN`].
    per_process: usize,
    /// Per load generator, its connections to each member.
    generators: Vec<Vec<usize>>,
}

impl IdlePlan {
    /// Connection `i` goes to member `i % members`; generator `g` opens a contiguous range of
    /// connections, no more than `per_process`.
    fn new(requested: usize, members: usize, limit: u64) -> IdlePlan {
        let per_process = limit.saturating_sub(FD_MARGIN) as usize;
        let measured = requested.min(members * per_process);
        let count = measured.div_ceil(per_process.max(1));
        let each = measured.div_ceil(count.max(1));
        // How many of 0..n are congruent to r modulo `members`.
        let below = |n: usize, r: usize| n / members + usize::from(r < n % members);
        let generators = (0..count)
            .map(|g| {
                let (start, end) = (g * each, ((g + 1) * each).min(measured));
                (0..members).map(|r| below(end, r) - below(start, r)).collect()
            })
            .collect();
        IdlePlan {
            requested,
            measured,
            members,
            per_process,
            generators,
        }
    }

    /// Connections member `i` holds.
    fn share(&self, i: usize) -> usize {
        self.measured / self.members + usize::from(i < self.measured % self.members)
    }

    /// Members needed to hold every requested connection.
    fn members_needed(&self) -> usize {
        self.requested.div_ceil(self.per_process.max(1))
    }

    /// What the idle part measures and why, in one line.
    fn describe(&self, limit: u64) -> String {
        let spread = format!(
            "{} load-generator processes on source addresses 127.0.0.2..",
            self.generators.len()
        );
        if self.measured < self.requested {
            format!(
                "idle part: requested {}; this machine allows {} per process (RLIMIT_NOFILE hard limit {limit}): \
                 measuring {} over {} members, from {spread} (`--idle-members {}` would hold all {})",
                self.requested,
                self.per_process,
                self.measured,
                self.members,
                self.members_needed(),
                self.requested
            )
        } else {
            format!(
                "idle part: {} connections over {} members (--idle-members), at most {} per process \
                 (RLIMIT_NOFILE hard limit {limit}), from {spread}",
                self.measured, self.members, self.per_process
            )
        }
    }
}

/// Opens the idle connections over a fresh cluster of `--idle-members` members and reports
/// each member's memory per connection.
async fn idle_part(opts: &Options, limit: u64) -> anyhow::Result<()> {
    let plan = IdlePlan::new(opts.idle, opts.idle_members, limit);
    println!("{}", plan.describe(limit));
    if plan.measured == 0 {
        bail!("the open-files limit ({limit}) leaves no room for idle connections");
    }
    if plan.generators.len() > 250 {
        bail!(
            "{} load generators: more than the loopback source addresses",
            plan.generators.len()
        );
    }
    let cluster = Cluster::start(plan.members, plan.share(0) + 1_000).await?;
    let result = idle_measure(&plan, &cluster).await;
    cluster.stop().await;
    result
}

/// A load generator of the idle part: its process (killed on drop) and what it reported.
struct Generator {
    child: Child,
    opened: u64,
    rss_before: u64,
    rss_after: u64,
    /// Handshakes it had to retry.
    retries: u64,
}

/// Starts the load generators (the running xtask again, as `bench scale-idle-client`) and
/// waits until each reports its connections open, within `deadline`.
async fn start_generators(
    plan: &IdlePlan,
    cluster: &Cluster,
    deadline: Instant,
) -> anyhow::Result<Vec<Generator>> {
    let me = std::env::current_exe().context("cannot find the running xtask")?;
    let mut started = Vec::new();
    for (g, counts) in plan.generators.iter().enumerate() {
        let to: Vec<String> = counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(m, n)| format!("{}={n}", cluster.members[m].1))
            .collect();
        let mut c = tokio::process::Command::new(&me);
        c.args(["bench", "scale-idle-client", "--source"])
            .arg(source(g, 250).to_string())
            .args(["--to", &to.join(",")])
            // [`CONCURRENT`] handshakes at once in all: the members (and Redis, which carries
            // every connection's presence) share the CPUs with the generators.
            .args([
                "--concurrent",
                &(CONCURRENT / plan.generators.len()).max(10).to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // Own process group, like the servers: this process stops it on every path.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = c.spawn().context("cannot start a load generator")?;
        let stdout = child.stdout.take().context("no stdout")?;
        started.push((child, BufReader::new(stdout).lines()));
    }
    let mut generators = Vec::new();
    for (g, (child, mut lines)) in started.into_iter().enumerate() {
        let report = timeout_at(deadline, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(report) = parse_opened(&line) {
                    return Ok(report);
                }
            }
            bail!("load generator {g} exited before opening its connections")
        })
        .await
        .with_context(|| format!("load generator {g} did not open its connections in time"))??;
        let [opened, rss_before, rss_after, retries] = report;
        generators.push(Generator {
            child,
            opened,
            rss_before,
            rss_after,
            retries,
        });
    }
    Ok(generators)
}

/// A load generator's report: `opened N RSS_BEFORE_KIB RSS_AFTER_KIB RETRIES`.
fn parse_opened(line: &str) -> Option<[u64; 4]> {
    let mut words = line.strip_prefix("opened ")?.split_whitespace();
    let mut next = || words.next()?.parse::<u64>().ok();
    Some([next()?, next()?, next()?, next()?])
}

async fn idle_measure(plan: &IdlePlan, cluster: &Cluster) -> anyhow::Result<()> {
    let m = plan.members;
    // Let the members settle (cluster handshakes) before the baseline.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pids: Vec<u32> = cluster
        .members
        .iter()
        .map(|(c, _)| c.id().context("a member exited"))
        .collect::<anyhow::Result<_>>()?;
    let before: Vec<u64> = pids
        .iter()
        .map(|p| sys::rss_kib(*p))
        .collect::<anyhow::Result<_>>()?;
    let started = Instant::now();
    // A generous bound (200 connections/s; a loaded 2-CPU machine opened 1,100/s): each
    // generator also bounds every connection by WAIT.
    let deadline = started + WAIT + Duration::from_millis(5 * plan.measured as u64);
    // Dropped on every path below, which kills them (`kill_on_drop`).
    let mut generators = start_generators(plan, cluster, deadline).await?;
    let opened_in = started.elapsed().as_secs_f64();
    let opened: u64 = generators.iter().map(|g| g.opened).sum();
    if opened != plan.measured as u64 {
        bail!(
            "the load generators opened {opened} connections of {}",
            plan.measured
        );
    }
    for (i, (_, addr)) in cluster.members.iter().enumerate() {
        loop {
            let n = connections(*addr).await?;
            if n >= plan.share(i) as u64 {
                break;
            }
            if Instant::now() >= deadline {
                bail!("member m{i} counts {n} connections of {}", plan.share(i));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let after: Vec<u64> = pids
        .iter()
        .map(|p| sys::rss_kib(*p))
        .collect::<anyhow::Result<_>>()?;
    println!(
        "idle connections: {} over {m} members{}, from {} load generators, opened in {opened_in:.1} s ({:.0}/s, \
         {} handshakes retried)",
        plan.measured,
        if plan.measured < plan.requested {
            format!(" (of {} requested: the open-files limit)", plan.requested)
        } else {
            String::new()
        },
        generators.len(),
        plan.measured as f64 / opened_in.max(1e-9),
        generators.iter().map(|g| g.retries).sum::<u64>()
    );
    println!(
        "{:<8} {:>12} {:>14} {:>14} {:>16}",
        "member", "connections", "VmRSS before", "VmRSS after", "per connection"
    );
    let mut per = Vec::new();
    for i in 0..m {
        let bytes = after[i].saturating_sub(before[i]) as f64 * 1024.0 / plan.share(i).max(1) as f64;
        per.push(bytes);
        println!(
            "{:<8} {:>12} {:>10} KiB {:>10} KiB {:>14.0} B",
            format!("m{i}"),
            plan.share(i),
            before[i],
            after[i],
            bytes
        );
    }
    let client: Vec<f64> = generators
        .iter()
        .map(|g| g.rss_after.saturating_sub(g.rss_before) as f64 * 1024.0 / g.opened.max(1) as f64)
        .collect();
    println!(
        "median {:.0} B (= {:.2} KiB) per idle connection on a member; a load generator's VmRSS grew {:.0} B \
         per connection (median of {}; tokio-tungstenite clients with 4 KiB read buffers)",
        median(per.clone()),
        median(per) / 1024.0,
        median(client),
        generators.len()
    );
    // Closing their stdin ends them; those still running after a grace period are killed.
    for g in &mut generators {
        drop(g.child.stdin.take());
    }
    for g in &mut generators {
        if timeout(Duration::from_secs(10), g.child.wait()).await.is_err() {
            let _ = g.child.kill().await;
        }
    }
    Ok(())
}

/// The hidden `cargo xtask bench scale-idle-client --source IP --to ADDR=N[,ADDR=N...] [--path
/// /channels/ws]`: a load
/// generator of `bench scale`'s idle part. Opens `N` WebSockets to each member at `ADDR` from
/// `IP`, prints `opened TOTAL RSS_BEFORE_KIB RSS_AFTER_KIB RETRIES` once all are open, and holds them
/// (answering keep-alive pings) until its stdin closes.
pub(crate) fn idle_client(args: &[String]) -> anyhow::Result<()> {
    let mut args = Args::new(args.iter().cloned());
    let src: Ipv4Addr = args.value("--source")?.context("--source IP is required")?;
    let to: String = args.value("--to")?.context("--to ADDR=N,... is required")?;
    let concurrent = args.value_or("--concurrent", CONCURRENT)?;
    // Another path (`/echo/ws`) points it at another application, to profile that one's idle
    // connections by hand (`heaptrack`, `perf`).
    let path: String = args.value_or("--path", format!("/{APP}/ws"))?;
    args.finish()?;
    let targets = parse_targets(&to)?;
    let total: usize = targets.iter().map(|(_, n)| n).sum();
    let limit = sys::raise_open_files_limit().context("cannot raise the open-files limit")?;
    if total as u64 + 100 > limit {
        bail!("{total} connections do not fit in the open-files limit {limit}");
    }
    tokio::runtime::Runtime::new()?.block_on(async move {
        let before = sys::rss_kib(std::process::id())?;
        let retries = Arc::new(AtomicU64::new(0));
        let mut opening: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>> =
            Vec::with_capacity(total);
        for (addr, n) in targets {
            let url = format!("ws://{addr}{path}");
            for _ in 0..n {
                let (url, retries) = (url.clone(), retries.clone());
                opening.push(Box::pin(async move {
                    // A handshake the loaded member drops is retried (twice), and counted.
                    let mut attempt = 0;
                    let ws = loop {
                        match connect(addr, &url, src).await {
                            Ok(ws) => break ws,
                            Err(e) if attempt == 2 => return Err(e),
                            Err(_) => {
                                attempt += 1;
                                retries.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    };
                    // Read (and so answer keep-alive pings) until the end.
                    anyhow::Ok(tokio::spawn(async move {
                        let mut ws = ws;
                        while let Some(Ok(_)) = ws.next().await {}
                    }))
                }));
            }
        }
        let held = in_batches(opening, concurrent).await?;
        let after = sys::rss_kib(std::process::id())?;
        {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            let retries = retries.load(Ordering::Relaxed);
            writeln!(out, "opened {total} {before} {after} {retries}")?;
            out.flush()?;
        }
        // Hold them until the bench closes stdin (or exits).
        tokio::task::spawn_blocking(|| {
            use std::io::Read as _;
            let mut buf = [0u8; 64];
            while matches!(std::io::stdin().read(&mut buf), Ok(n) if n > 0) {}
        })
        .await?;
        for h in held {
            h.abort();
        }
        anyhow::Ok(())
    })
}

/// `ADDR=N,ADDR=N,...`.
fn parse_targets(to: &str) -> anyhow::Result<Vec<(SocketAddr, usize)>> {
    to.split(',')
        .map(|t| {
            let (addr, n) = t
                .split_once('=')
                .with_context(|| format!("{t:?}: expected ADDR=N"))?;
            let addr = addr
                .parse()
                .with_context(|| format!("{addr:?}: not a socket address"))?;
            let n = n.parse().with_context(|| format!("{n:?}: not a count"))?;
            Ok((addr, n))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_options() -> anyhow::Result<()> {
        let o = parse(&[])?;
        assert_eq!(
            (
                o.members,
                o.channels,
                o.subscribers,
                o.rate,
                o.secs,
                o.rounds,
                o.idle,
                o.sources
            ),
            (4, 1_000, 2, 2_000, 5, 3, 100_000, 8)
        );
        let o = parse(&args("--quick --idle 10"))?;
        assert_eq!((o.channels, o.rounds, o.idle, o.quick), (100, 1, 10, true));
        assert_eq!(o.idle_members, 4);
        assert_eq!(parse(&args("--members 3"))?.idle_members, 3);
        assert_eq!(parse(&args("--members 3 --idle-members 6"))?.idle_members, 6);
        assert!(parse(&args("--idle-members 1")).is_err());
        assert!(parse(&args("--members 1")).is_err());
        assert!(parse(&args("--channels 3")).is_err());
        assert!(parse(&args("--channels 0"))?.channels == 0);
        assert!(parse(&args("--sources 0")).is_err());
        assert!(parse(&args("--nonsense")).is_err());
        Ok(())
    }

    #[test]
    fn plans_idle_connections_within_the_open_files_limit() -> anyhow::Result<()> {
        // Fits: 100,000 over 6 members of 19,000 each, 6 generators of at most 19,000.
        let p = IdlePlan::new(100_000, 6, 20_000);
        assert_eq!(
            (p.measured, p.per_process, p.generators.len()),
            (100_000, 19_000, 6)
        );
        for g in &p.generators {
            assert!(g.iter().sum::<usize>() <= p.per_process, "{g:?}");
        }
        for m in 0..6 {
            let to_m: usize = p.generators.iter().map(|g| g[m]).sum();
            assert_eq!(to_m, p.share(m));
            assert!(p.share(m) <= p.per_process);
        }
        assert_eq!(p.generators.iter().flatten().sum::<usize>(), 100_000);
        assert!(
            p.describe(20_000)
                .starts_with("idle part: 100000 connections over 6 members")
        );

        // Does not fit: capped to what 4 members hold, and said so.
        let p = IdlePlan::new(100_000, 4, 20_000);
        assert_eq!((p.measured, p.members_needed()), (76_000, 6));
        assert_eq!((0..4).map(|m| p.share(m)).collect::<Vec<_>>(), [19_000; 4]);
        assert_eq!(p.generators.iter().flatten().sum::<usize>(), 76_000);
        assert_eq!(
            p.describe(20_000),
            "idle part: requested 100000; this machine allows 19000 per process (RLIMIT_NOFILE hard limit 20000): \
             measuring 76000 over 4 members, from 4 load-generator processes on source addresses 127.0.0.2.. \
             (`--idle-members 6` would hold all 100000)"
        );

        // Small: one generator, uneven shares.
        let p = IdlePlan::new(10, 4, 20_000);
        assert_eq!(p.generators, vec![vec![3, 3, 2, 2]]);
        // A limit below the margin leaves nothing.
        assert_eq!(IdlePlan::new(10, 4, 500).measured, 0);
        assert_eq!(parse_opened("opened 12 100 250 1"), Some([12, 100, 250, 1]));
        assert_eq!(parse_opened("opened 12 100 250"), None);
        let t = parse_targets("127.0.0.1:80=3,127.0.0.1:81=0")?;
        assert_eq!(t, [("127.0.0.1:80".parse()?, 3), ("127.0.0.1:81".parse()?, 0)]);
        assert!(parse_targets("127.0.0.1:80").is_err());
        Ok(())
    }

    #[test]
    fn reads_frames_and_metrics() -> anyhow::Result<()> {
        let Message::Text(t) = publication(17, 5) else {
            bail!("not text")
        };
        assert!(t.contains(r#""pub":"c17""#), "{t}");
        let sent: serde_json::Value = serde_json::from_str(&t)?;
        let delivered = format!(
            r#"{{"t":"msg","app":"channels","seq":3,"data":{},"_":{{"id":9}}}}"#,
            sent["data"]
        );
        assert_eq!(delivered_id(&delivered), Some(5));
        assert_eq!(delivered_id(r#"{"t":"welcome"}"#), None);
        let metrics = "# TYPE cluster_tasks counter\ncluster_tasks_total{direction=\"out\"} 7\n\
                       thywill_cluster_tasks_total{direction=\"in\"} 12\n";
        assert_eq!(parse_tasks_in(metrics), 12);
        assert_eq!(parse_tasks_in(""), 0);
        assert_eq!(source(0, 8), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(source(9, 8), Ipv4Addr::new(127, 0, 0, 3));
        Ok(())
    }
}
