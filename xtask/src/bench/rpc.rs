//! `cargo xtask bench rpc`: RPC round trips through the framework, against the Calculations
//! example (a release process on a loopback port; the client is this process).
//!
//! `--conns` connections each keep `--inflight` calls in flight (default one): every reply is
//! checked (its id correlates it with its call, its result with the argument), and another
//! call goes out. Two runs, one per kind of function: `powers.square` (synchronous, answered
//! inline) and `multiplicative.divideByTwo` (asynchronous, a task per call under a timeout).
//! The result is calls per second and the p50/p99 latency of the calls inside the window of
//! `--secs` seconds after `--warmup` seconds.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message;

use super::echo::{self, Kind, WAIT, Ws};
use crate::flags::Args;
use crate::sys;
use crate::{binary, cmd};

/// The application id of the Calculations example.
const APP: &str = "calculations";

/// A function measured.
struct Function {
    name: &'static str,
    /// `sync` or `async`.
    kind: &'static str,
    /// What the result of a call with `x` must be.
    expected: fn(f64) -> f64,
}

const FUNCTIONS: &[Function] = &[
    Function {
        name: "powers.square",
        kind: "sync",
        expected: |x| x * x,
    },
    Function {
        name: "multiplicative.divideByTwo",
        kind: "async",
        expected: |x| x / 2.0,
    },
];

/// The options of `bench rpc`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Options {
    secs: u64,
    warmup: u64,
    conns: usize,
    inflight: usize,
}

pub(crate) fn parse(args: &[String]) -> anyhow::Result<Options> {
    let mut args = Args::new(args.iter().cloned());
    let opts = Options {
        secs: args.value_or("--secs", 10)?,
        warmup: args.value_or("--warmup", 2)?,
        conns: args.value_or("--conns", 100)?,
        inflight: args.value_or("--inflight", 1)?,
    };
    args.finish()?;
    if opts.secs == 0 || opts.conns == 0 || opts.inflight == 0 {
        bail!("--secs, --conns and --inflight must be at least 1");
    }
    // The transport answers at most 64 concurrent calls per connection; more would only queue.
    if opts.inflight > 64 {
        bail!("--inflight must be at most 64 (the per-connection limit of concurrent calls)");
    }
    Ok(opts)
}

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    // Check the options before a build that may take minutes.
    parse(args)?;
    super::in_release_build(|| run_release(args))
}

fn run_release(args: &[String]) -> anyhow::Result<()> {
    let opts = parse(args)?;
    super::ensure_open_files((opts.conns + 256) as u64, &format!("{} connections", opts.conns))?;
    super::release_binary("example-calculations")?;
    super::block_on_interruptible(bench(&opts))
}

/// What one function achieved.
#[derive(Debug)]
struct Results {
    calls_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

async fn bench(opts: &Options) -> anyhow::Result<()> {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "bench rpc: {} connections x {} call(s) in flight each, {} s after a {} s warm-up per function; \
         client and server share {cpus} CPUs",
        opts.conns, opts.inflight, opts.secs, opts.warmup
    );
    let mut c = cmd(binary("example-calculations", true));
    c.args(["--port", "0", "--member", "alpha"])
        .env("RUST_LOG", "warn");
    let (mut child, addr) = echo::spawn_server(c, "calculations").await?;
    let url = format!("ws://{addr}/calculations/ws");
    println!("calculations: pid {}, {url}", child.id().unwrap_or_default());

    let mut rows = Vec::new();
    for &Function {
        name: function,
        kind,
        expected,
    } in FUNCTIONS
    {
        let conns = echo::open(Kind::Thywill, &url, opts.conns).await?;
        let warm_end = Instant::now() + Duration::from_secs(opts.warmup);
        let end = warm_end + Duration::from_secs(opts.secs);
        let mut tasks = JoinSet::new();
        for ws in conns {
            tasks.spawn(drive(ws, function, expected, opts.inflight, warm_end, end));
        }
        let mut latencies = Vec::new();
        while let Some(done) = tasks.join_next().await {
            latencies.extend(done??);
        }
        latencies.sort_unstable();
        let results = Results {
            calls_per_sec: latencies.len() as f64 / opts.secs as f64,
            p50: echo::percentile(&latencies, 50.0),
            p99: echo::percentile(&latencies, 99.0),
        };
        println!(
            "{function} ({kind}): {:.0} calls/s, p50 {}, p99 {}",
            results.calls_per_sec,
            echo::millis(results.p50),
            echo::millis(results.p99)
        );
        rows.push((format!("{function} ({kind})"), results));
    }
    let status = sys::stop(&mut child, Duration::from_secs(10)).await?;
    if !status.success() && status.code().is_some() {
        eprintln!("calculations: server exited with {status}");
    }
    println!();
    print!("{}", table(&rows));
    Ok(())
}

/// One connection's loop: keep `inflight` calls of `function` pending until `end`, checking
/// every reply; returns the latencies of the calls that started after `warm_end` and were
/// answered by `end`.
async fn drive(
    mut ws: Ws,
    function: &'static str,
    expected: fn(f64) -> f64,
    inflight: usize,
    warm_end: Instant,
    end: Instant,
) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::new();
    let mut pending: HashMap<u64, (Instant, f64)> = HashMap::with_capacity(inflight);
    let mut next_id = 1u64;
    loop {
        while pending.len() < inflight && Instant::now() < end {
            let id = next_id;
            next_id += 1;
            let x = (id % 1000) as f64;
            let frame = serde_json::json!({"t": "rpc", "app": APP, "id": id, "name": function, "args": [x]});
            pending.insert(id, (Instant::now(), expected(x)));
            ws.send(Message::text(frame.to_string())).await?;
        }
        if pending.is_empty() {
            break;
        }
        let (id, result) = timeout(WAIT, reply(&mut ws))
            .await
            .context("no reply within the time limit")??;
        let Some((sent, want)) = pending.remove(&id) else {
            bail!("a reply to call {id}, which is not pending");
        };
        if result != Some(want) {
            bail!("call {id} of {function}: expected {want}, got {result:?}");
        }
        let done = Instant::now();
        if sent >= warm_end && done <= end {
            latencies.push(done - sent);
        }
    }
    Ok(latencies)
}

/// The next RPC reply: its id and numeric result.
async fn reply(ws: &mut Ws) -> anyhow::Result<(u64, Option<f64>)> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => match echo::frame_type(&text).as_deref() {
                Some("rpc_ok") => {
                    let v: serde_json::Value = serde_json::from_str(&text)?;
                    let id = v
                        .get("id")
                        .and_then(serde_json::Value::as_u64)
                        .context("rpc_ok without an id")?;
                    return Ok((id, v.get("result").and_then(serde_json::Value::as_f64)));
                }
                Some("rpc_err" | "error") => bail!("the server answered with an error: {text}"),
                _ => {}
            },
            Some(Ok(Message::Close(frame))) => bail!("the server closed the connection: {frame:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("the connection ended"),
        }
    }
}

/// The printed summary.
fn table(rows: &[(String, Results)]) -> String {
    let mut out = format!(
        "{:<36} {:>10} {:>12} {:>12}\n",
        "function", "calls/s", "p50", "p99"
    );
    for (name, r) in rows {
        out.push_str(&format!(
            "{name:<36} {:>10.0} {:>12} {:>12}\n",
            r.calls_per_sec,
            echo::millis(r.p50),
            echo::millis(r.p99)
        ));
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
                inflight: 1
            }
        );
        assert_eq!(
            parse(&args("--secs 3 --conns 10 --warmup 0 --inflight 8"))?,
            Options {
                secs: 3,
                warmup: 0,
                conns: 10,
                inflight: 8
            }
        );
        for bad in [
            "--secs 0",
            "--conns 0",
            "--inflight 0",
            "--inflight 65",
            "--idle 5",
            "extra",
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad:?} was accepted");
        }
        Ok(())
    }

    #[test]
    fn table_lists_every_function() {
        let r = Results {
            calls_per_sec: 1234.0,
            p50: Duration::from_micros(1500),
            p99: Duration::from_millis(3),
        };
        let t = table(&[("powers.square (sync)".to_owned(), r)]);
        assert!(
            t.contains("powers.square (sync)") && t.contains("1234") && t.contains("1.500 ms"),
            "{t}"
        );
    }
}
