//! `cargo xtask bench echo`: the echo example against a raw tokio-tungstenite echo server and
//! socketioxide (on axum), in one run, so that the ratios show what the framework costs.
//!
//! - Round trips: `--conns` connections each send a 32-byte message and wait for the echo, one
//!   in flight per connection, for `--secs` seconds after `--warmup` seconds; the result is
//!   round trips per second, the p50/p99 latency of the round trips inside the window, and the
//!   server's CPU time (user + system, all threads, from `/proc/<pid>/stat`) per round trip.
//! - Memory: `--idle` idle connections are opened (100 at a time); the server's resident
//!   memory (`VmRSS`) before and after, divided by their number, is its memory per connection.
//!
//! Each server is a separate release process on a loopback port, started afresh for each of
//! `--rounds` rounds (servers interleaved, so that a burst of load from elsewhere on the machine
//! hits all of them alike); the table shows the medians. The client is this process and speaks
//! each server's own protocol ([`Kind`]): raw frames, Socket.IO events (`42["echo",…]`),
//! thywill's protocol v1 (`/echo/ws`: welcome frame, then `msg` frames).

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Child;
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub(super) use super::peers::Kind;
use crate::cmd;
use crate::flags::Args;
use crate::sys;

/// The payload of every message: 32 bytes.
const PAYLOAD: &str = "0123456789abcdef0123456789abcdef";
/// Connections opened concurrently while setting up. Below 128, the listen backlog tokio (like
/// std) gives both servers: beyond it SYNs are dropped and retried a second later.
const BATCH: usize = 100;
/// Bound on every single wait: connecting, a reply, a server start.
pub(super) const WAIT: Duration = Duration::from_secs(30);
/// What every table says about the figures.
pub(super) const SHARED: &str = "the load generator and the servers share this machine's CPUs \
     (and other work on it may run too): compare the ratios of one run, not absolute figures";

pub(super) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The options of `bench echo`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Options {
    secs: u64,
    warmup: u64,
    conns: usize,
    idle: usize,
    rounds: usize,
    /// The servers measured, in table order.
    pub(super) servers: Vec<Kind>,
    /// glibc's `MALLOC_ARENA_MAX` for every server started (the same for all): `None` leaves
    /// glibc's default (eight arenas per CPU).
    malloc_arena_max: Option<u32>,
}

pub(crate) fn parse(args: &[String]) -> anyhow::Result<Options> {
    let mut args = Args::new(args.iter().cloned());
    let servers: String = args.value_or("--servers", "raw,socketioxide,socket.io-node,thywill".to_owned())?;
    let opts = Options {
        secs: args.value_or("--secs", 10)?,
        warmup: args.value_or("--warmup", 2)?,
        conns: args.value_or("--conns", 100)?,
        idle: args.value_or("--idle", 10_000)?,
        rounds: args.value_or("--rounds", 3)?,
        servers: Kind::parse_list(&servers)?,
        malloc_arena_max: match args.value_or("--malloc-arena-max", 0u32)? {
            0 => None,
            n => Some(n),
        },
    };
    args.finish()?;
    if opts.secs == 0 || opts.conns == 0 || opts.rounds == 0 {
        bail!("--secs, --conns and --rounds must be at least 1");
    }
    Ok(opts)
}

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let opts = parse(args)?;
    // Each side of each connection is an open file: the client holds all of them, each server its own.
    let needed = (opts.idle.max(opts.conns) + 256) as u64;
    super::ensure_open_files(needed, &format!("{} connections (lower --idle)", opts.idle))?;
    for kind in &opts.servers {
        server_binary(*kind)?;
    }
    super::block_on_interruptible(bench(&opts))
}

/// The release binary serving `kind` (which must have been built).
fn server_binary(kind: Kind) -> anyhow::Result<std::path::PathBuf> {
    match kind {
        Kind::Raw => Ok(std::env::current_exe()?),
        Kind::Socketio => {
            let path = super::peers::socketioxide_binary();
            if !path.is_file() {
                bail!("{} is missing (`cargo xtask bench` builds it)", path.display());
            }
            Ok(path)
        }
        Kind::SocketioNode => Ok("node".into()),
        Kind::Thywill => super::release_binary("example-echo"),
    }
}

/// What one server achieved in one round.
#[derive(Clone, Debug)]
struct Results {
    round_trips_per_sec: f64,
    /// Server CPU time (user + system) per round trip, in seconds.
    cpu_per_round_trip: f64,
    p50: Duration,
    p99: Duration,
    /// Bytes of resident memory per idle connection, when measured.
    rss_per_conn: Option<f64>,
}

impl Results {
    /// The median of each figure over rounds (each figure on its own).
    fn median(rounds: &[Results]) -> Results {
        let of = |f: &dyn Fn(&Results) -> f64| median(rounds.iter().map(f).collect());
        let rss: Vec<f64> = rounds.iter().filter_map(|r| r.rss_per_conn).collect();
        Results {
            round_trips_per_sec: of(&|r| r.round_trips_per_sec),
            cpu_per_round_trip: of(&|r| r.cpu_per_round_trip),
            p50: Duration::from_secs_f64(of(&|r| r.p50.as_secs_f64())),
            p99: Duration::from_secs_f64(of(&|r| r.p99.as_secs_f64())),
            rss_per_conn: (!rss.is_empty()).then(|| median(rss)),
        }
    }
}

/// The median of some figures (the mean of the middle two of an even count); 0 when empty.
pub(super) fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.sort_by(f64::total_cmp);
    let mid = xs.len() / 2;
    if xs.len() % 2 == 1 {
        xs[mid]
    } else {
        (xs[mid - 1] + xs[mid]) / 2.0
    }
}

async fn bench(opts: &Options) -> anyhow::Result<()> {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "bench echo: servers {}; {} connections x {}-byte messages, one in flight each, {} s after a {} s \
         warm-up; memory with {} idle connections; {} rounds (medians shown); {cpus} CPUs; \
         glibc malloc arenas: {}; {SHARED}",
        opts.servers
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", "),
        opts.conns,
        PAYLOAD.len(),
        opts.secs,
        opts.warmup,
        opts.idle,
        opts.rounds,
        opts.malloc_arena_max.map_or_else(
            || "glibc's default".to_owned(),
            |n| format!("at most {n} (MALLOC_ARENA_MAX, every server)")
        ),
    );
    let mut rounds: Vec<Vec<Results>> = vec![Vec::new(); opts.servers.len()];
    for round in 1..=opts.rounds {
        println!("round {round} of {}", opts.rounds);
        for (i, kind) in opts.servers.iter().enumerate() {
            let r = measure(*kind, opts)
                .await
                .with_context(|| format!("{} (round {round})", kind.name()))?;
            rounds[i].push(r);
        }
    }
    let rows: Vec<(Kind, Results)> = opts
        .servers
        .iter()
        .zip(&rounds)
        .map(|(k, r)| (*k, Results::median(r)))
        .collect();
    println!();
    print!("{}", table(&rows));
    Ok(())
}

/// Starts one server, measures it, stops it.
async fn measure(kind: Kind, opts: &Options) -> anyhow::Result<Results> {
    let (mut child, addr) = start(kind, opts.malloc_arena_max).await?;
    let pid = child.id().context("the server exited at once")?;
    let url = match kind {
        Kind::Raw => format!("ws://{addr}/"),
        Kind::Socketio | Kind::SocketioNode => format!("ws://{addr}{}", Kind::socketio_path()),
        Kind::Thywill => format!("ws://{addr}/echo/ws"),
    };
    println!("  {}: pid {pid}, {url}", kind.name());

    let mut rss_per_conn = None;
    if opts.idle > 0 {
        let before = sys::rss_kib(pid)?;
        let started = Instant::now();
        let conns = open(kind, &url, opts.idle).await?;
        if kind == Kind::Thywill {
            wait_for_connections(addr, |n| n >= opts.idle as u64).await?;
        }
        let after = sys::rss_kib(pid)?;
        let per_conn = after.saturating_sub(before) as f64 * 1024.0 / opts.idle as f64;
        println!(
            "  {}: {} idle connections opened in {:.1} s; VmRSS {before} KiB -> {after} KiB: {} per connection",
            kind.name(),
            opts.idle,
            started.elapsed().as_secs_f64(),
            bytes(per_conn)
        );
        rss_per_conn = Some(per_conn);
        drop(conns);
        if kind == Kind::Thywill {
            wait_for_connections(addr, |n| n == 0).await?;
        }
    }

    let conns = open(kind, &url, opts.conns).await?;
    // The 32 bytes alone on raw, a JSON string in the others' envelopes.
    let frame = Utf8Bytes::from(match kind {
        Kind::Raw => PAYLOAD.to_owned(),
        _ => kind.frame("echo", &format!("\"{PAYLOAD}\"")),
    });
    let warm_end = Instant::now() + Duration::from_secs(opts.warmup);
    let end = warm_end + Duration::from_secs(opts.secs);
    let mut tasks = JoinSet::new();
    for ws in conns {
        tasks.spawn(drive(kind, ws, frame.clone(), warm_end, end));
    }
    // The server's CPU time over the measured window (the drivers run meanwhile).
    tokio::time::sleep_until(warm_end).await;
    let cpu_before = sys::cpu_time(pid)?;
    tokio::time::sleep_until(end).await;
    let cpu = sys::cpu_time(pid)?.saturating_sub(cpu_before);
    let mut latencies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done??);
    }
    latencies.sort_unstable();
    let results = Results {
        round_trips_per_sec: latencies.len() as f64 / opts.secs as f64,
        cpu_per_round_trip: cpu.as_secs_f64() / latencies.len().max(1) as f64,
        p50: percentile(&latencies, 50.0),
        p99: percentile(&latencies, 99.0),
        rss_per_conn,
    };
    println!(
        "  {}: {:.0} round trips/s, server CPU {:.2} s = {:.1} µs per round trip, p50 {}, p99 {}",
        kind.name(),
        results.round_trips_per_sec,
        cpu.as_secs_f64(),
        results.cpu_per_round_trip * 1e6,
        millis(results.p50),
        millis(results.p99)
    );
    let status = sys::stop(&mut child, Duration::from_secs(10)).await?;
    if !status.success() && status.code().is_some() {
        eprintln!("{}: server exited with {status}", kind.name());
    }
    Ok(results)
}

/// Starts a server on a free port (with at most `arenas` malloc arenas, when given); returns
/// it and the address from its `listening:` line.
async fn start(kind: Kind, arenas: Option<u32>) -> anyhow::Result<(Child, SocketAddr)> {
    let mut c = match kind {
        Kind::SocketioNode => super::peers::socketio_node_command(),
        _ => cmd(server_binary(kind)?),
    };
    if let Some(n) = arenas {
        c.env("MALLOC_ARENA_MAX", n.to_string());
    }
    match kind {
        Kind::Raw => c.args(["bench-raw-server", "--port", "0"]),
        Kind::Socketio => c.args(["--port", "0"]),
        Kind::SocketioNode => &mut c,
        Kind::Thywill => c
            .args(["--port", "0", "--member", "alpha"])
            .env("RUST_LOG", "warn"),
    };
    spawn_server(c, kind.name()).await
}

/// Starts a server that prints `listening: URL` on stdout (in its own process group, killed
/// on drop); returns it and the address it listens on.
pub(super) async fn spawn_server(
    c: std::process::Command,
    name: &str,
) -> anyhow::Result<(Child, SocketAddr)> {
    let mut c = tokio::process::Command::from(c);
    // The benchmarks measure throughput: lift the per-connection rate limit (default 200
    // frames/s), which would close their connections with 4429.
    c.env("THYWILL_LIMITS__RATE_PER_SEC", "1000000")
        .env("THYWILL_LIMITS__RATE_BURST", "1000000")
        // The bench may run as root (containers, CI): thywill's examples refuse to serve as
        // root unless told; the bench's servers only listen on loopback.
        .env("THYWILL_PROCESS__ALLOW_ROOT", "true");
    // Own process group: a Ctrl-C in the terminal reaches xtask, which stops the server.
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = c
        .spawn()
        .with_context(|| format!("cannot start the {} server", name))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let addr = timeout(WAIT, async {
        while let Some(line) = lines.next_line().await? {
            if let Some(addr) = listening_addr(&line) {
                return Ok(addr);
            }
        }
        bail!("the {} server exited before listening", name)
    })
    .await
    .with_context(|| format!("the {} server did not listen within {WAIT:?}", name))??;
    // Keep reading, so that the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, addr))
}

/// The address in `listening: http://127.0.0.1:10081/echo/` (or `ws://…`).
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let url = line.strip_prefix("listening: ")?.trim();
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next()?.parse().ok()
}

/// Opens `count` connections, [`BATCH`] at a time, each through its protocol's handshake (on
/// thywill the welcome frame, on Socket.IO the namespace's connect).
pub(super) async fn open(kind: Kind, url: &str, count: usize) -> anyhow::Result<Vec<Ws>> {
    let mut conns = Vec::with_capacity(count);
    while conns.len() < count {
        let mut batch = JoinSet::new();
        for _ in 0..BATCH.min(count - conns.len()) {
            batch.spawn(connect(kind, url.to_owned()));
        }
        while let Some(ws) = batch.join_next().await {
            conns.push(ws?.with_context(|| format!("connection {} of {count} failed", conns.len() + 1))?);
        }
    }
    Ok(conns)
}

async fn connect(kind: Kind, url: String) -> anyhow::Result<Ws> {
    let (mut ws, _) = timeout(
        WAIT,
        tokio_tungstenite::connect_async_with_config(url.as_str(), None, true),
    )
    .await
    .context("connect timed out")??;
    kind.handshake(&mut ws).await?;
    Ok(ws)
}

/// The `t` of a protocol frame.
pub(super) fn frame_type(text: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    Some(value.get("t")?.as_str()?.to_owned())
}

/// One connection's loop: send, await the echo, repeat until `end`; returns the latencies of
/// the round trips that started after `warm_end` and finished by `end`.
async fn drive(
    kind: Kind,
    mut ws: Ws,
    frame: Utf8Bytes,
    warm_end: Instant,
    end: Instant,
) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::new();
    loop {
        let sent = Instant::now();
        if sent >= end {
            break;
        }
        ws.send(Message::Text(frame.clone())).await?;
        timeout(WAIT, reply(kind, &mut ws))
            .await
            .context("no echo within the time limit")??;
        let done = Instant::now();
        if sent >= warm_end && done <= end {
            latencies.push(done - sent);
        }
    }
    Ok(latencies)
}

async fn reply(kind: Kind, ws: &mut Ws) -> anyhow::Result<()> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => match kind {
                Kind::Raw if text.as_str() == PAYLOAD => return Ok(()),
                Kind::Raw => bail!("unexpected echo {text:?}"),
                _ if kind.is_event(&text, "echo") => return Ok(()),
                Kind::Thywill if frame_type(&text).as_deref() == Some("error") => {
                    bail!("the server answered with an error: {text}")
                }
                _ => {
                    if let Some(pong) = kind.pong(&text) {
                        ws.send(pong).await?;
                    }
                }
            },
            Some(Ok(Message::Close(frame))) => bail!("the server closed the connection: {frame:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("the connection ended"),
        }
    }
}

/// Polls thywill's `/echo/alive` until its connection count satisfies `done`.
async fn wait_for_connections(addr: SocketAddr, done: impl Fn(u64) -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let n = alive_connections(addr).await?;
        if done(n) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("thywill still reports {n} connections after {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `connections` count of thywill's health route (a bare HTTP/1.0 request).
async fn alive_connections(addr: SocketAddr) -> anyhow::Result<u64> {
    let get = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream
            .write_all(b"GET /echo/alive HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        anyhow::Ok(response)
    };
    let response = timeout(WAIT, get).await.context("/echo/alive did not answer")??;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    let value: serde_json::Value = serde_json::from_str(body).context("/echo/alive: not JSON")?;
    value
        .get("connections")
        .and_then(serde_json::Value::as_u64)
        .context("/echo/alive: no connection count")
}

/// The `p`th percentile of sorted durations (nearest rank); zero when there are none.
pub(super) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub(super) fn millis(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn bytes(b: f64) -> String {
    format!("{:.1} KiB", b / 1024.0)
}

/// `a / b` as a ratio, `-` when `b` is zero.
pub(super) fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "-".to_owned()
    }
}

/// The printed comparison: one row per server (medians), then the ratios of each server to
/// raw and to socketioxide.
fn table(rows: &[(Kind, Results)]) -> String {
    let mut out = format!(
        "{:<22} {:>12} {:>14} {:>13} {:>11} {:>11} {:>14}\n",
        "server", "round trips/s", "CPU µs/rt", "rt per CPU-s", "p50", "p99", "idle RSS/conn"
    );
    let rss = |r: &Results| r.rss_per_conn.map_or("-".to_owned(), bytes);
    let per_cpu_s = |r: &Results| {
        if r.cpu_per_round_trip > 0.0 {
            1.0 / r.cpu_per_round_trip
        } else {
            0.0
        }
    };
    for (kind, r) in rows {
        out.push_str(&format!(
            "{:<22} {:>12.0} {:>14.1} {:>13.0} {:>11} {:>11} {:>14}\n",
            kind.name(),
            r.round_trips_per_sec,
            r.cpu_per_round_trip * 1e6,
            per_cpu_s(r),
            millis(r.p50),
            millis(r.p99),
            rss(r)
        ));
    }
    let find = |k: Kind| rows.iter().find(|(kind, _)| *kind == k).map(|(_, r)| r);
    for base in [Kind::Raw, Kind::Socketio] {
        let Some(b) = find(base) else { continue };
        for (kind, r) in rows
            .iter()
            .filter(|(k, _)| *k != base && !(base == Kind::Socketio && *k == Kind::Raw))
        {
            let rss_ratio = match (r.rss_per_conn, b.rss_per_conn) {
                (Some(x), Some(y)) => ratio(x, y),
                _ => "-".to_owned(),
            };
            out.push_str(&format!(
                "{:<22} {:>12} {:>14} {:>13} {:>11} {:>11} {:>14}\n",
                format!("{} / {}", kind.name(), base.name()),
                ratio(r.round_trips_per_sec, b.round_trips_per_sec),
                ratio(r.cpu_per_round_trip, b.cpu_per_round_trip),
                ratio(per_cpu_s(r), per_cpu_s(b)),
                ratio(r.p50.as_secs_f64(), b.p50.as_secs_f64()),
                ratio(r.p99.as_secs_f64(), b.p99.as_secs_f64()),
                rss_ratio
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_options() -> anyhow::Result<()> {
        assert_eq!(
            parse(&[])?,
            Options {
                secs: 10,
                warmup: 2,
                conns: 100,
                idle: 10_000,
                rounds: 3,
                servers: Kind::ALL.to_vec(),
                malloc_arena_max: None,
            }
        );
        assert_eq!(
            parse(&args(
                "--secs 3 --idle 2000 --conns 10 --warmup 0 --rounds 1 --servers thywill,raw \
                 --malloc-arena-max 2"
            ))?,
            Options {
                secs: 3,
                warmup: 0,
                conns: 10,
                idle: 2000,
                rounds: 1,
                servers: vec![Kind::Raw, Kind::Thywill],
                malloc_arena_max: Some(2),
            }
        );
        for bad in [
            "--secs 0",
            "--conns 0",
            "--rounds 0",
            "--servers nats",
            "--secs x",
            "--idle -1",
            "extra",
            "--bogus 1",
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad:?} was accepted");
        }
        Ok(())
    }

    #[test]
    fn reads_listening_lines() {
        let addr = |s: &str| listening_addr(s).map(|a| a.to_string());
        assert_eq!(
            addr("listening: http://127.0.0.1:10081/echo/").as_deref(),
            Some("127.0.0.1:10081")
        );
        assert_eq!(
            addr("listening: ws://127.0.0.1:4000/").as_deref(),
            Some("127.0.0.1:4000")
        );
        assert_eq!(addr("something else"), None);
    }

    #[test]
    fn percentiles() {
        let ms: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&ms, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&ms, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&ms[..1], 99.0), Duration::from_millis(1));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn frame_types() {
        assert_eq!(
            frame_type(r#"{"t":"msg","app":"echo","seq":1,"data":"x","_":{}}"#).as_deref(),
            Some("msg")
        );
        assert_eq!(frame_type("not json"), None);
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
    }

    #[test]
    fn table_has_ratios() {
        let r = |rt: f64, us: f64, ms: u64, rss: f64| Results {
            round_trips_per_sec: rt,
            cpu_per_round_trip: us / 1e6,
            p50: Duration::from_millis(ms),
            p99: Duration::from_millis(ms * 2),
            rss_per_conn: Some(rss),
        };
        let rows = [
            (Kind::Raw, r(1000.0, 10.0, 1, 1024.0)),
            (Kind::Socketio, r(750.0, 20.0, 1, 2048.0)),
            (Kind::Thywill, r(500.0, 25.0, 2, 4096.0)),
        ];
        let t = table(&rows);
        let line = |prefix: &str| {
            t.lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        // throughput, CPU per round trip, round trips per CPU-s, p50, p99, memory.
        assert_eq!(
            line("thywill / raw")[3..],
            ["0.50x", "2.50x", "0.40x", "2.00x", "2.00x", "4.00x"],
            "{t}"
        );
        assert_eq!(
            line("thywill / socketioxide")[3..],
            ["0.67x", "1.25x", "0.80x", "2.00x", "2.00x", "2.00x"],
            "{t}"
        );
        assert_eq!(
            line("socketioxide / raw")[3..],
            ["0.75x", "2.00x", "0.50x", "1.00x", "1.00x", "2.00x"],
            "{t}"
        );
        assert!(line("raw / socketioxide").is_empty(), "{t}");
        assert_eq!(line("raw")[1], "1000", "{t}");
    }
}
