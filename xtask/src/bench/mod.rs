//! `cargo xtask bench NAME`: benchmarks. They measure release binaries, and the load generator
//! itself must be optimised too, so [`in_release_build`] reruns xtask from a release build.

mod broadcast;
mod cluster;
mod echo;
mod idle_axum;
mod minify;
mod peers;
pub(crate) mod raw_server;
mod rpc;
mod scale;

use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, bail};

use crate::sys::{self, Signals};
use crate::{binary, cargo, cmd, run as run_cmd};

const BENCHES: &str = "\
benchmarks:
  echo  round trips/s, server CPU per round trip, p50/p99 latency and memory per idle
        connection of a raw tokio-tungstenite server, socketioxide (axum), Socket.IO 4.8 on
        Node.js (needs node and npm) and thywill, in one run (medians of rounds, ratios):
        [--secs 10] [--conns 100] [--idle 10000] [--warmup 2] [--rounds 3]
        [--servers raw,socketioxide,socket.io-node,thywill]
        [--malloc-arena-max N (glibc's MALLOC_ARENA_MAX for every server; default: glibc's)]
  idle-axum  memory per idle connection of thywill on its own accept loop (echo) and mounted
        in axum (axum-app, authenticated connections), in one run (medians of rounds, ratio):
        [--idle 5000] [--rounds 3]
  broadcast  one publisher, subscribers of one channel on raw, socketioxide, socket.io-node,
        thywill (one member)
        and thywill over two Redis members: deliveries/s, delivery ratio (must be 1.0), p50/p99
        publish-to-delivery latency, server CPU per delivery (medians of rounds, ratios):
        [--subscribers 1000] [--rate 100] [--secs 10] [--rounds 3]
        [--servers raw,socketioxide,socket.io-node,thywill,redis]
  cluster  messages/s and p50/p99 latency from a client on member A through the draw
        application to a client on member B: single member, Redis, HTTP:
        [--secs 5] [--warmup 1] [--inflight 32]
  rpc   RPC calls/s and p50/p99 latency against the calculations example, a synchronous and an
        asynchronous function: [--secs 10] [--conns 100] [--inflight 1] [--warmup 2]
  lookup  the tracker lookups on the path of a send (to a session, to a connection) with 1,000 and
        100,000 tracked connections, ns each and the ratio, beside a plain HashMap<Arc<str>, u64>
        over as many keys of the same shape (the machine's share of the growth):
        [--small 1000] [--large 100000] [--lookups 200000] (thywill-core's example `lookup`,
        release)
  scale  the capacity model's inputs (docs/SCALING.md): members over one Redis, channels each
        held by one member: deliveries/s, CPU per delivery, per message on members that hold no
        subscriber, Redis CPU per message; then idle connections and memory per connection:
        [--quick] [--members 4] [--channels 1000] [--subscribers 2] [--rate 2000] [--secs 5]
        [--rounds 3] [--idle 100000] [--idle-members 4] [--sources 8] (--channels 0 or --idle 0
        skips a part; idle connections are held by load-generator processes, each process up to
        its open-files limit: what does not fit in the members is not measured, and said so)
  send  a send through the node (send_to_session, send_to_connection) to clients on other
        members with 1,000 and 100,000 tracked connections (synthetic remote entries, a sink
        for a cluster), ns each and the ratio, the tracker's part alone and a plain
        HashMap<Arc<str>, u64> baseline: [--small 1000] [--large 100000] [--sends 100000]
        (thywill-node's example `send`, release)
  minify  size and time of minifying the examples' scripts and styles, thywill (swc_core,
        lightningcss) against terser and clean-css from npm: [--repeat 20] [--no-node]
";

pub(crate) fn run(args: Vec<String>) -> anyhow::Result<()> {
    let Some((name, rest)) = args.split_first() else {
        print!("usage: cargo xtask bench NAME [options]\n\n{BENCHES}");
        bail!("which benchmark?");
    };
    match name.as_str() {
        "echo" => {
            // Check the options before a build that may take minutes.
            let servers = echo::parse(rest)?.servers;
            if servers.contains(&peers::Kind::Socketio) {
                peers::build_socketioxide()?;
            }
            if servers.contains(&peers::Kind::SocketioNode) {
                peers::prepare_socketio_node()?;
            }
            in_release_build(|| echo::run(rest))
        }
        "idle-axum" => {
            idle_axum::parse(rest)?;
            in_release_build(|| idle_axum::run(rest))
        }
        "rpc" => rpc::run(rest),
        "broadcast" => {
            let opts = broadcast::parse(rest)?;
            if opts.needs_socketioxide() {
                peers::build_socketioxide()?;
            }
            if opts.needs_socketio_node() {
                peers::prepare_socketio_node()?;
            }
            in_release_build(|| broadcast::run(rest))
        }
        "cluster" => {
            cluster::parse(rest)?;
            in_release_build(|| cluster::run(rest))
        }
        "scale" => {
            scale::parse(rest)?;
            in_release_build(|| scale::run(rest))
        }
        // Hidden: a load generator of `bench scale`'s idle part, started by it.
        "scale-idle-client" => scale::idle_client(rest),
        "minify" => minify::run(rest),
        "lookup" => {
            // A small release build of the core alone (the example has no other dependency).
            let mut c = cargo();
            c.args([
                "run",
                "--release",
                "--quiet",
                "-p",
                "thywill-core",
                "--example",
                "lookup",
                "--",
            ])
            .args(rest);
            run_cmd(c)
        }
        "send" => {
            let mut c = cargo();
            c.args([
                "run",
                "--release",
                "--quiet",
                "-p",
                "thywill-node",
                "--example",
                "send",
                "--",
            ])
            .args(rest);
            run_cmd(c)
        }
        "-h" | "--help" | "help" => {
            print!("{BENCHES}");
            Ok(())
        }
        other => bail!("unknown benchmark {other:?}\n\n{BENCHES}"),
    }
}

/// Raises the open-files limit and checks that it allows `needed` descriptors.
pub(crate) fn ensure_open_files(needed: u64, what: &str) -> anyhow::Result<()> {
    let limit = sys::raise_open_files_limit().context("cannot raise the open-files limit")?;
    if limit < needed {
        bail!("{what} need about {needed} open files, the limit is {limit}");
    }
    Ok(())
}

/// The release binary `name`, which must have been built.
pub(crate) fn release_binary(name: &str) -> anyhow::Result<std::path::PathBuf> {
    let path = binary(name, true);
    if !path.is_file() {
        bail!(
            "{} is missing: run `cargo build --release --workspace --bins`",
            path.display()
        );
    }
    Ok(path)
}

/// Runs a benchmark on a fresh runtime until it ends or Ctrl-C / SIGTERM arrives; dropping
/// the benchmark's future kills its servers (`kill_on_drop`).
pub(crate) fn block_on_interruptible(
    bench: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(async {
        let mut signals = Signals::new()?;
        tokio::select! {
            result = bench => result,
            signal = signals.recv() => bail!("interrupted by {signal}"),
        }
    })
}

/// Runs `bench` in a release build of xtask. When this process is not one, builds the whole
/// workspace in release mode (`--workspace`: see crates.md, "the -p trap") and reruns the
/// release xtask with the same arguments; the benchmark then finds every release binary built.
pub(crate) fn in_release_build(bench: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
    let release = binary("xtask", true);
    let me = std::env::current_exe().context("cannot find the running xtask")?;
    if same_file(&me, &release) {
        return bench();
    }
    eprintln!(
        "xtask bench: building the workspace in release mode (the first release build takes several minutes)"
    );
    let mut build = cargo();
    build.args(["build", "--release", "--workspace", "--bins"]);
    run_cmd(build)?;

    let mut again = tokio::process::Command::from(cmd(&release));
    again
        .args(std::env::args_os().skip(1))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    tokio::runtime::Runtime::new()?.block_on(async {
        let mut signals = Signals::new()?;
        let mut child = again
            .spawn()
            .with_context(|| format!("cannot start {}", release.display()))?;
        let status = tokio::select! {
            status = child.wait() => status?,
            _ = signals.recv() => sys::stop(&mut child, std::time::Duration::from_secs(30)).await?,
        };
        if !status.success() {
            bail!("the release benchmark failed ({status})");
        }
        Ok(())
    })
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
