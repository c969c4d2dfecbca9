//! `cargo xtask bench broadcast`: one publisher and `--subscribers` subscribers of one channel
//! (the Draw application's), spread evenly over two members clustered by Redis, then all on a
//! single member. The publisher sends `--rate` messages per second for `--secs` seconds; the
//! result is deliveries per second, the delivery ratio (deliveries / (messages × subscribers),
//! which must be 1.0) and the p50/p99 latency from publish to delivery.
//!
//! Members are release `example-draw` processes on loopback ports (Redis: a `redis-server`
//! started here); the publisher and the subscribers are this process, so one clock times both
//! ends. Before measuring, probe messages are sent until every subscriber has received one
//! (each joins the channel in the application's connection hook, just after its welcome frame).
//!
//! Reading the latency: a message reaches its subscribers one write (and one client read) at a
//! time, so the last subscriber hears it a whole fan-out after the first. When the members and
//! this client share a few cores, that fan-out is CPU-bound and the latency grows with the
//! number of subscribers (on 2 cores, about 20 µs of fan-out per delivery: p50 ≈ 20 ms at 1,000
//! subscribers, ≈ 200–300 ms at 10,000); it measures the machine, not a queue in thywill. Run
//! the client on another machine to see the members' own figures.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::cluster::{Backend, start};
use super::echo::{Kind, WAIT, millis, open, percentile};
use crate::flags::Args;
use crate::sys;

/// Ids of probe messages start here; measured messages start at [`MEASURED`].
const PROBE: u64 = 1;
const MEASURED: u64 = 1_000_000_000;
/// How long after the last message the subscribers may take to receive it.
const GRACE: Duration = Duration::from_secs(10);

/// The options of `bench broadcast`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Options {
    subscribers: usize,
    rate: u64,
    secs: u64,
}

pub(crate) fn parse(args: &[String]) -> anyhow::Result<Options> {
    let mut args = Args::new(args.iter().cloned());
    let opts = Options {
        subscribers: args.value_or("--subscribers", 10_000)?,
        rate: args.value_or("--rate", 10)?,
        secs: args.value_or("--secs", 10)?,
    };
    args.finish()?;
    if opts.subscribers == 0 || opts.rate == 0 || opts.secs == 0 {
        bail!("--subscribers, --rate and --secs must be at least 1");
    }
    Ok(opts)
}

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let opts = parse(args)?;
    super::ensure_open_files((opts.subscribers + 256) as u64, "the subscribers")?;
    super::release_binary("example-draw")?;
    // Dropping the benchmark kills the processes (kill_on_drop).
    super::block_on_interruptible(bench(&opts))
}

/// What one setup achieved.
#[derive(Debug)]
struct Results {
    messages: u64,
    deliveries: u64,
    ratio: f64,
    per_sec: f64,
    p50: Duration,
    p99: Duration,
}

fn setup_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Redis => "redis, 2 members",
        Backend::Single => "single member",
        Backend::Http => "http, 2 members",
    }
}

async fn bench(opts: &Options) -> anyhow::Result<()> {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "bench broadcast: 1 publisher, {} subscribers of one channel, {} messages/s for {} s; \
         members, Redis and this client share {cpus} CPUs",
        opts.subscribers, opts.rate, opts.secs
    );
    let mut rows = Vec::new();
    for backend in [Backend::Redis, Backend::Single] {
        let r = measure(backend, opts)
            .await
            .with_context(|| format!("benchmark on {}", setup_name(backend)))?;
        println!(
            "  {:<18} {:>9} deliveries of {:>4} messages   ratio {:.4}   {:>8.0} deliveries/s   p50 {:>10}   p99 {:>10}",
            setup_name(backend),
            r.deliveries,
            r.messages,
            r.ratio,
            r.per_sec,
            millis(r.p50),
            millis(r.p99)
        );
        rows.push((backend, r));
    }
    println!("\n| setup | subscribers | messages | deliveries | ratio | deliveries/s | p50 | p99 |");
    println!("|---|---|---|---|---|---|---|---|");
    for (b, r) in &rows {
        println!(
            "| {} | {} | {} | {} | {:.4} | {:.0} | {} | {} |",
            setup_name(*b),
            opts.subscribers,
            r.messages,
            r.deliveries,
            r.ratio,
            r.per_sec,
            millis(r.p50),
            millis(r.p99)
        );
    }
    if let Some((b, r)) = rows
        .iter()
        .find(|(_, r)| r.deliveries != r.messages * opts.subscribers as u64)
    {
        bail!("{}: delivery ratio {:.4}, not 1.0", setup_name(*b), r.ratio);
    }
    Ok(())
}

/// A stroke carrying an id, as the publisher sends it.
fn stroke(id: u64) -> Message {
    Message::text(format!(
        r#"{{"t":"msg","app":"draw","data":{{"segments":[{{"x":1,"y":2}}],"id":{id}}},"_":{{}}}}"#
    ))
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
/// deliveries (returned at the end).
async fn subscribe(
    ws: super::echo::Ws,
    probe_seen: Arc<AtomicU64>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Vec<(u64, Instant)>> {
    let mut stop = stop;
    let (_tx, mut rx) = ws.split();
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
            }
        }
    }
    Ok(got)
}

/// Sends probes (ids from [`PROBE`]) until every subscriber received one, then one more that
/// every subscriber must receive: the channel is then quiet.
async fn warm_up<S>(tx: &mut S, seen: &[Arc<AtomicU64>]) -> anyhow::Result<()>
where
    S: futures_util::Sink<Message> + Unpin,
    S::Error: std::error::Error + Send + Sync + 'static,
{
    let deadline = Instant::now() + WAIT;
    let mut id = PROBE;
    let all_seen = |at_least: u64| seen.iter().all(|s| s.load(Ordering::Relaxed) >= at_least);
    while !all_seen(PROBE) {
        if Instant::now() > deadline {
            let missing = seen.iter().filter(|s| s.load(Ordering::Relaxed) < PROBE).count();
            bail!("{missing} subscribers received no probe within {WAIT:?}");
        }
        tx.send(stroke(id)).await?;
        id += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tx.send(stroke(id)).await?;
    while !all_seen(id) {
        if Instant::now() > deadline {
            bail!("the last probe did not reach every subscriber within {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn measure(backend: Backend, opts: &Options) -> anyhow::Result<Results> {
    let (mut children, url_a, url_b) = start(backend).await?;
    let half = opts.subscribers / 2;
    let setup = Instant::now();
    let mut subscribers = open(Kind::Thywill, &url_a, opts.subscribers - half).await?;
    subscribers.extend(open(Kind::Thywill, &url_b, half).await?);
    let publisher = open(Kind::Thywill, &url_a, 1)
        .await?
        .pop()
        .context("no publisher")?;
    eprintln!(
        "  {}: {} subscribers connected in {:.1} s",
        setup_name(backend),
        subscribers.len(),
        setup.elapsed().as_secs_f64()
    );
    let (mut tx, mut publisher_rx) = publisher.split();
    // The publisher reads its side too (pings), so that it stays healthy.
    let drain = tokio::spawn(async move { while let Some(Ok(_)) = publisher_rx.next().await {} });

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let seen: Vec<Arc<AtomicU64>> = (0..subscribers.len())
        .map(|_| Arc::new(AtomicU64::new(0)))
        .collect();
    let mut readers = JoinSet::new();
    for (ws, s) in subscribers.into_iter().zip(&seen) {
        readers.spawn(subscribe(ws, s.clone(), stop_rx.clone()));
    }
    warm_up(&mut tx, &seen).await?;

    // Publish at the rate, on a fixed schedule.
    let count = opts.rate * opts.secs;
    let period = Duration::from_secs_f64(1.0 / opts.rate as f64);
    let mut sent_at = Vec::with_capacity(count as usize);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    for k in 0..count {
        tick.tick().await;
        sent_at.push(Instant::now());
        tx.send(stroke(MEASURED + k)).await?;
    }
    let window = started.elapsed();
    // A last probe (an id below the measured ones) follows every measured message in order:
    // once every subscriber has it, every delivery that will happen has happened. Bounded.
    let grace_end = Instant::now() + GRACE;
    let barrier = MEASURED - 1;
    tx.send(stroke(barrier)).await?;
    while !seen.iter().all(|s| s.load(Ordering::Relaxed) >= barrier) {
        if Instant::now() > grace_end {
            eprintln!("  the barrier did not reach every subscriber within {GRACE:?}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    drain.abort();
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_options_and_finds_ids() -> anyhow::Result<()> {
        let o = parse(&["--subscribers".into(), "10".into()])?;
        assert_eq!((o.subscribers, o.rate, o.secs), (10, 10, 10));
        assert!(parse(&["--rate".into(), "0".into()]).is_err());
        let frame =
            r#"{"t":"msg","app":"draw","seq":7,"data":{"segments":[{"x":1,"y":2}],"id":1000000003},"_":{}}"#;
        assert_eq!(stroke_id(frame), Some(1_000_000_003));
        assert_eq!(stroke_id(r#"{"t":"welcome"}"#), None);
        let Message::Text(t) = stroke(5) else {
            bail!("not text")
        };
        assert_eq!(stroke_id(&t), Some(5));
        Ok(())
    }
}
