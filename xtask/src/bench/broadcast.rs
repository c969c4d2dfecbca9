//! `cargo xtask bench broadcast`: one publisher and `--subscribers` subscribers of one channel,
//! on each server in one run: a raw tokio-tungstenite server that forwards every message to every
//! other connection, socketioxide (on axum; a room every socket joins, `socket.to(room).emit`),
//! thywill (the Draw application, one member) and thywill over two members clustered by Redis
//! (subscribers spread evenly). The publisher sends `--rate` messages per second for `--secs`
//! seconds; the result is deliveries per second, the delivery ratio (deliveries / (messages ×
//! subscribers), which must be 1.0), the p50/p99 latency from publish to delivery and the
//! servers' CPU time per delivery (all their processes, Redis included; `/proc/<pid>/stat`).
//! Servers are interleaved over `--rounds` rounds; the table shows medians.
//!
//! Servers are release processes on loopback ports (Redis: a `redis-server` started here); the
//! publisher and the subscribers are this process, so one clock times both ends. Before
//! measuring, probe messages are sent until every subscriber has received one (on thywill each
//! joins the channel in the application's connection hook, just after its welcome frame).
//!
//! Reading the latency: a message reaches its subscribers one write (and one client read) at a
//! time, so the last subscriber hears it a whole fan-out after the first. When the servers and
//! this client share a few cores, that fan-out is CPU-bound and the latency grows with the
//! number of subscribers; it measures the machine as much as the server. Compare the servers of
//! one run (the ratios), and run the client on another machine to see the servers' own figures.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::cluster::{Backend, start};
use super::echo::{Kind, SHARED, WAIT, median, millis, open, percentile, ratio, spawn_server};
use crate::flags::Args;
use crate::{cmd, sys};

/// Ids of probe messages start here; measured messages start at [`MEASURED`].
const PROBE: u64 = 1;
const MEASURED: u64 = 1_000_000_000;
/// How long after the last message the subscribers may take to receive it.
const GRACE: Duration = Duration::from_secs(10);

/// What is measured: a server on its own, or thywill over two Redis-clustered members.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Setup {
    Single(Kind),
    ThywillRedis,
}

impl Setup {
    const ALL: [Setup; 5] = [
        Setup::Single(Kind::Raw),
        Setup::Single(Kind::Socketio),
        Setup::Single(Kind::SocketioNode),
        Setup::Single(Kind::Thywill),
        Setup::ThywillRedis,
    ];

    fn name(self) -> &'static str {
        match self {
            Setup::Single(kind) => kind.name(),
            Setup::ThywillRedis => "thywill redis x2",
        }
    }

    fn option(self) -> &'static str {
        match self {
            Setup::Single(kind) => kind.name(),
            Setup::ThywillRedis => "redis",
        }
    }

    fn kind(self) -> Kind {
        match self {
            Setup::Single(kind) => kind,
            Setup::ThywillRedis => Kind::Thywill,
        }
    }

    /// `raw,socketioxide,socket.io-node,thywill,redis` (any of them), in table order.
    fn parse_list(list: &str) -> anyhow::Result<Vec<Setup>> {
        let names: Vec<&str> = list.split(',').filter(|s| !s.is_empty()).collect();
        if let Some(bad) = names
            .iter()
            .find(|n| !Setup::ALL.iter().any(|s| s.option() == **n))
        {
            bail!("unknown server {bad:?} (raw, socketioxide, socket.io-node, thywill, redis)");
        }
        let setups: Vec<Setup> = Setup::ALL
            .into_iter()
            .filter(|s| names.contains(&s.option()))
            .collect();
        if setups.is_empty() {
            bail!("no server named in {list:?}");
        }
        Ok(setups)
    }
}

/// The options of `bench broadcast`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Options {
    subscribers: usize,
    rate: u64,
    secs: u64,
    rounds: usize,
    setups: Vec<Setup>,
}

impl Options {
    /// Whether the socketioxide peer takes part.
    pub(crate) fn needs_socketioxide(&self) -> bool {
        self.setups.contains(&Setup::Single(Kind::Socketio))
    }

    /// Whether the Node peer takes part.
    pub(crate) fn needs_socketio_node(&self) -> bool {
        self.setups.contains(&Setup::Single(Kind::SocketioNode))
    }
}

pub(crate) fn parse(args: &[String]) -> anyhow::Result<Options> {
    let mut args = Args::new(args.iter().cloned());
    let servers: String = args.value_or(
        "--servers",
        "raw,socketioxide,socket.io-node,thywill,redis".to_owned(),
    )?;
    let opts = Options {
        subscribers: args.value_or("--subscribers", 1_000)?,
        rate: args.value_or("--rate", 100)?,
        secs: args.value_or("--secs", 10)?,
        rounds: args.value_or("--rounds", 3)?,
        setups: Setup::parse_list(&servers)?,
    };
    args.finish()?;
    if opts.subscribers == 0 || opts.rate == 0 || opts.secs == 0 || opts.rounds == 0 {
        bail!("--subscribers, --rate, --secs and --rounds must be at least 1");
    }
    Ok(opts)
}

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let opts = parse(args)?;
    super::ensure_open_files((opts.subscribers + 256) as u64, "the subscribers")?;
    super::release_binary("example-draw")?;
    if opts.needs_socketioxide() && !super::peers::socketioxide_binary().is_file() {
        bail!("the socketioxide peer is not built (`cargo xtask bench` builds it)");
    }
    // Dropping the benchmark kills the processes (kill_on_drop).
    super::block_on_interruptible(bench(&opts))
}

/// What one setup achieved in one round.
#[derive(Clone, Debug)]
struct Results {
    messages: u64,
    deliveries: u64,
    ratio: f64,
    per_sec: f64,
    p50: Duration,
    p99: Duration,
    /// The servers' CPU time (user + system) per delivery, in seconds.
    cpu_per_delivery: f64,
}

impl Results {
    /// The median of each figure over rounds; the counts are the worst round's.
    fn median(rounds: &[Results]) -> Results {
        let of = |f: &dyn Fn(&Results) -> f64| median(rounds.iter().map(f).collect());
        let worst = rounds.iter().min_by(|a, b| a.ratio.total_cmp(&b.ratio)).cloned();
        Results {
            messages: worst.as_ref().map_or(0, |w| w.messages),
            deliveries: worst.as_ref().map_or(0, |w| w.deliveries),
            ratio: worst.map_or(0.0, |w| w.ratio),
            per_sec: of(&|r| r.per_sec),
            p50: Duration::from_secs_f64(of(&|r| r.p50.as_secs_f64())),
            p99: Duration::from_secs_f64(of(&|r| r.p99.as_secs_f64())),
            cpu_per_delivery: of(&|r| r.cpu_per_delivery),
        }
    }

    fn per_cpu_s(&self) -> f64 {
        if self.cpu_per_delivery > 0.0 {
            1.0 / self.cpu_per_delivery
        } else {
            0.0
        }
    }
}

async fn bench(opts: &Options) -> anyhow::Result<()> {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "bench broadcast: servers {}; 1 publisher, {} subscribers of one channel, {} messages/s for {} s; \
         {} rounds (medians shown); {cpus} CPUs; {SHARED}",
        opts.setups
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", "),
        opts.subscribers,
        opts.rate,
        opts.secs,
        opts.rounds,
    );
    let mut rounds: Vec<Vec<Results>> = vec![Vec::new(); opts.setups.len()];
    for round in 1..=opts.rounds {
        println!("round {round} of {}", opts.rounds);
        for (i, setup) in opts.setups.iter().enumerate() {
            let r = measure(*setup, opts)
                .await
                .with_context(|| format!("{} (round {round})", setup.name()))?;
            println!(
                "  {:<18} {:>9} deliveries of {:>4} messages   ratio {:.4}   {:>8.0} deliveries/s   p50 {:>10}   p99 {:>10}   CPU {:.1} µs/delivery",
                setup.name(),
                r.deliveries,
                r.messages,
                r.ratio,
                r.per_sec,
                millis(r.p50),
                millis(r.p99),
                r.cpu_per_delivery * 1e6
            );
            rounds[i].push(r);
        }
    }
    let rows: Vec<(Setup, Results)> = opts
        .setups
        .iter()
        .zip(&rounds)
        .map(|(s, r)| (*s, Results::median(r)))
        .collect();
    println!();
    print!("{}", table(&rows, opts.subscribers));
    if let Some((s, r)) = rows.iter().find(|(_, r)| r.ratio != 1.0) {
        bail!("{}: delivery ratio {:.4} in a round, not 1.0", s.name(), r.ratio);
    }
    Ok(())
}

/// The printed comparison: one row per setup (medians; the worst round's delivery ratio), then
/// thywill's ratios to raw and to socketioxide.
fn table(rows: &[(Setup, Results)], subscribers: usize) -> String {
    let mut out = format!(
        "{:<32} {:>11} {:>8} {:>13} {:>11} {:>11} {:>16} {:>18}\n",
        "server", "subscribers", "ratio", "deliveries/s", "p50", "p99", "CPU µs/delivery", "deliveries/CPU-s"
    );
    for (setup, r) in rows {
        out.push_str(&format!(
            "{:<32} {:>11} {:>8.4} {:>13.0} {:>11} {:>11} {:>16.2} {:>18.0}\n",
            setup.name(),
            subscribers,
            r.ratio,
            r.per_sec,
            millis(r.p50),
            millis(r.p99),
            r.cpu_per_delivery * 1e6,
            r.per_cpu_s()
        ));
    }
    let find = |s: Setup| rows.iter().find(|(setup, _)| *setup == s).map(|(_, r)| r);
    for base in [Kind::Raw, Kind::Socketio] {
        let Some(b) = find(Setup::Single(base)) else {
            continue;
        };
        for (setup, r) in rows.iter().filter(|(s, _)| {
            s.kind() == Kind::Thywill
                || (base == Kind::Raw && matches!(s, Setup::Single(k) if k.is_socketio()))
        }) {
            out.push_str(&format!(
                "{:<32} {:>11} {:>8} {:>13} {:>11} {:>11} {:>16} {:>18}\n",
                format!("{} / {}", setup.name(), base.name()),
                "",
                "",
                ratio(r.per_sec, b.per_sec),
                ratio(r.p50.as_secs_f64(), b.p50.as_secs_f64()),
                ratio(r.p99.as_secs_f64(), b.p99.as_secs_f64()),
                ratio(r.cpu_per_delivery, b.cpu_per_delivery),
                ratio(r.per_cpu_s(), b.per_cpu_s())
            ));
        }
    }
    out
}

/// A stroke carrying an id, as the publisher sends it on `kind`.
fn stroke(kind: Kind, id: u64) -> Message {
    Message::text(kind.frame("draw", &format!(r#"{{"segments":[{{"x":1,"y":2}}],"id":{id}}}"#)))
}

/// The stroke id in a server frame, found without parsing the whole frame (the client must
/// keep up with every delivery).
fn stroke_id(text: &str) -> Option<u64> {
    let at = text.rfind("\"id\":")? + 5;
    let digits: &str = &text[at..];
    let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// One subscriber's reading: the last probe seen (shared, for the warm-up) and the measured
/// deliveries (returned at the end). Answers Engine.IO pings.
async fn subscribe(
    kind: Kind,
    ws: super::echo::Ws,
    probe_seen: Arc<AtomicU64>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Vec<(u64, Instant)>> {
    let mut stop = stop;
    let (mut tx, mut rx) = ws.split();
    let mut got = Vec::new();
    loop {
        let next = tokio::select! {
            _ = stop.changed() => break,
            m = rx.next() => m,
        };
        let Some(m) = next else {
            bail!("a subscriber's connection closed")
        };
        if let Message::Text(text) = m? {
            let now = Instant::now();
            if let Some(id) = stroke_id(&text) {
                if id >= MEASURED {
                    got.push((id, now));
                } else {
                    probe_seen.fetch_max(id, Ordering::Relaxed);
                }
            } else if let Some(pong) = kind.pong(&text) {
                tx.send(pong).await?;
            }
        }
    }
    Ok(got)
}

/// The publisher's connection, driven by a task that writes what it is given and reads (and
/// answers) what the server sends it.
fn publisher(kind: Kind, ws: super::echo::Ws) -> mpsc::Sender<Message> {
    let (out, mut queue) = mpsc::channel::<Message>(64);
    let (mut tx, mut rx) = ws.split();
    tokio::spawn(async move {
        loop {
            let sent = tokio::select! {
                m = queue.recv() => match m {
                    Some(m) => tx.send(m).await,
                    None => break,
                },
                m = rx.next() => match m {
                    Some(Ok(Message::Text(text))) => match kind.pong(&text) {
                        Some(pong) => tx.send(pong).await,
                        None => Ok(()),
                    },
                    Some(Ok(_)) => Ok(()),
                    Some(Err(_)) | None => break,
                },
            };
            if sent.is_err() {
                break;
            }
        }
    });
    out
}

/// Sends probes (ids from [`PROBE`]) until every subscriber received one, then one more that
/// every subscriber must receive: the channel is then quiet.
async fn warm_up(kind: Kind, tx: &mpsc::Sender<Message>, seen: &[Arc<AtomicU64>]) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    let mut id = PROBE;
    let all_seen = |at_least: u64| seen.iter().all(|s| s.load(Ordering::Relaxed) >= at_least);
    while !all_seen(PROBE) {
        if Instant::now() > deadline {
            let missing = seen.iter().filter(|s| s.load(Ordering::Relaxed) < PROBE).count();
            bail!("{missing} subscribers received no probe within {WAIT:?}");
        }
        tx.send(stroke(kind, id)).await?;
        id += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tx.send(stroke(kind, id)).await?;
    while !all_seen(id) {
        if Instant::now() > deadline {
            bail!("the last probe did not reach every subscriber within {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Starts the setup's servers; returns the processes and the WebSocket URLs of members A and B
/// (the same on a single server).
async fn start_setup(setup: Setup) -> anyhow::Result<(Vec<Child>, String, String)> {
    let single = |child: Child, addr: SocketAddr, path: &str| {
        let url = format!("ws://{addr}{path}");
        (vec![child], url.clone(), url)
    };
    match setup {
        Setup::Single(Kind::Thywill) => start(Backend::Single).await,
        Setup::ThywillRedis => start(Backend::Redis).await,
        Setup::Single(Kind::Raw) => {
            let mut c = cmd(std::env::current_exe()?);
            c.args(["bench-raw-server", "--port", "0", "--broadcast"]);
            let (child, addr) = spawn_server(c, "raw").await?;
            Ok(single(child, addr, "/"))
        }
        Setup::Single(Kind::Socketio) => {
            let mut c = cmd(super::peers::socketioxide_binary());
            c.args(["--port", "0"]);
            let (child, addr) = spawn_server(c, "socketioxide").await?;
            Ok(single(child, addr, Kind::socketio_path()))
        }
        Setup::Single(Kind::SocketioNode) => {
            let c = super::peers::socketio_node_command();
            let (child, addr) = spawn_server(c, "socket.io-node").await?;
            Ok(single(child, addr, Kind::socketio_path()))
        }
    }
}

/// The CPU time all `children` have used so far.
fn cpu_time(children: &[Child]) -> anyhow::Result<Duration> {
    children.iter().filter_map(Child::id).map(sys::cpu_time).sum()
}

async fn measure(setup: Setup, opts: &Options) -> anyhow::Result<Results> {
    let kind = setup.kind();
    let (mut children, url_a, url_b) = start_setup(setup).await?;
    let half = opts.subscribers / 2;
    let started = Instant::now();
    let mut subscribers = open(kind, &url_a, opts.subscribers - half).await?;
    subscribers.extend(open(kind, &url_b, half).await?);
    let publisher_ws = open(kind, &url_a, 1).await?.pop().context("no publisher")?;
    eprintln!(
        "  {}: {} subscribers connected in {:.1} s",
        setup.name(),
        subscribers.len(),
        started.elapsed().as_secs_f64()
    );
    let tx = publisher(kind, publisher_ws);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let seen: Vec<Arc<AtomicU64>> = (0..subscribers.len())
        .map(|_| Arc::new(AtomicU64::new(0)))
        .collect();
    let mut readers = JoinSet::new();
    for (ws, s) in subscribers.into_iter().zip(&seen) {
        readers.spawn(subscribe(kind, ws, s.clone(), stop_rx.clone()));
    }
    warm_up(kind, &tx, &seen).await?;

    // Publish at the rate, on a fixed schedule.
    let count = opts.rate * opts.secs;
    let period = Duration::from_secs_f64(1.0 / opts.rate as f64);
    let mut sent_at = Vec::with_capacity(count as usize);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let cpu_before = cpu_time(&children)?;
    let started = Instant::now();
    for k in 0..count {
        tick.tick().await;
        sent_at.push(Instant::now());
        tx.send(stroke(kind, MEASURED + k)).await?;
    }
    let window = started.elapsed();
    // A last probe (an id below the measured ones) follows every measured message in order:
    // once every subscriber has it, every delivery that will happen has happened. Bounded.
    let grace_end = Instant::now() + GRACE;
    let barrier = MEASURED - 1;
    tx.send(stroke(kind, barrier)).await?;
    while !seen.iter().all(|s| s.load(Ordering::Relaxed) >= barrier) {
        if Instant::now() > grace_end {
            eprintln!("  the barrier did not reach every subscriber within {GRACE:?}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu = cpu_time(&children)?.saturating_sub(cpu_before);
    stop_tx.send_replace(true);
    let mut latencies = Vec::with_capacity((count as usize) * opts.subscribers);
    while let Some(r) = readers.join_next().await {
        for (id, at) in r.context("a subscriber task failed")?? {
            let Some(sent) = sent_at.get((id - MEASURED) as usize) else {
                continue;
            };
            latencies.push(at.saturating_duration_since(*sent));
        }
    }
    drop(tx);
    for c in &mut children {
        let _ = sys::stop(c, Duration::from_secs(10)).await;
    }
    latencies.sort();
    let deliveries = latencies.len() as u64;
    let expected = count * opts.subscribers as u64;
    Ok(Results {
        messages: count,
        deliveries,
        ratio: deliveries as f64 / expected as f64,
        per_sec: deliveries as f64 / window.as_secs_f64().max(1e-9),
        p50: percentile(&latencies, 50.0),
        p99: percentile(&latencies, 99.0),
        cpu_per_delivery: cpu.as_secs_f64() / deliveries.max(1) as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_options_and_finds_ids() -> anyhow::Result<()> {
        let o = parse(&["--subscribers".into(), "10".into()])?;
        assert_eq!((o.subscribers, o.rate, o.secs, o.rounds), (10, 100, 10, 3));
        assert_eq!(o.setups, Setup::ALL.to_vec());
        let o = parse(&["--servers".into(), "redis,thywill".into()])?;
        assert_eq!(o.setups, vec![Setup::Single(Kind::Thywill), Setup::ThywillRedis]);
        assert!(!o.needs_socketioxide());
        assert!(parse(&["--rate".into(), "0".into()]).is_err());
        assert!(parse(&["--servers".into(), "nats".into()]).is_err());
        let frame =
            r#"{"t":"msg","app":"draw","seq":7,"data":{"segments":[{"x":1,"y":2}],"id":1000000003},"_":{}}"#;
        assert_eq!(stroke_id(frame), Some(1_000_000_003));
        assert_eq!(stroke_id(r#"{"t":"welcome"}"#), None);
        for kind in Kind::ALL {
            let Message::Text(t) = stroke(kind, 5) else {
                bail!("not text")
            };
            assert_eq!(stroke_id(&t), Some(5), "{kind:?}");
        }
        let Message::Text(t) = stroke(Kind::Socketio, 5) else {
            bail!("not text")
        };
        assert!(Kind::Socketio.is_event(&t, "draw"), "{t}");
        Ok(())
    }
}
