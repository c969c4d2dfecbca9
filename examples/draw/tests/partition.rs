//! Partitions, not only crashes (issue 12): three members, each in a network namespace made by
//! the test ([`thywill_testkit::netns`]), with a client link (their clients stay connected)
//! and a cluster link to Redis and to the other members. Gamma's cluster link goes down for
//! 3 s while a publisher on alpha draws 50 strokes a second, then comes back.
//!
//! Guarantees checked, with the Redis backend and with the HTTP backend:
//!
//! - every receiving client ([`ReliableClient`]) gets every stroke exactly once and in order,
//!   or is told that continuity was lost (`continuity_lost`) and then gets the strokes it
//!   does get once and in order;
//! - no ghosts: once the members have seen each other down and up again, every member's
//!   cluster-wide connection table and presence match the clients really connected. These
//!   are read from a Display cluster (the example that shows them: `connectionList` from the
//!   tracker, presence `state` of its presence channel) running in the same namespaces, whose
//!   clients connect and disconnect on both sides of the partition while it lasts.
//!
//! Without root or `ip` (iproute2) the tests print why and pass.
//!
//! Figures printed (stderr): per backend, detection times (who saw whom down and up, in ms
//! after the cut), how many clients got everything / were told of a loss, duplicates dropped,
//! resume requests, the longest catch-up after the heal and the largest latency.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};
use thywill_testkit::members::{Member, all_up, is, now_ms};
use thywill_testkit::netns::{HubRedis, Net};
use thywill_testkit::reliable::{ConnEvent, Delivered, ReliableClient, now_us};
use thywill_testkit::{TIMEOUT, WsClient, WsError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

const DRAW: &str = env!("CARGO_BIN_EXE_example-draw");
const IDS: [&str; 3] = ["alpha", "beta", "gamma"];
/// The partitioned member (index in [`IDS`]); the publisher is on alpha.
const CUT: usize = 2;
/// Web ports inside every namespace (each namespace has its own ports).
const DRAW_PORT: u16 = 8080;
const DISPLAY_PORT: u16 = 8081;
/// HTTP cluster ports.
const DRAW_CLUSTER_PORT: u16 = 18080;
const DISPLAY_CLUSTER_PORT: u16 = 18081;
/// The shared secret of the HTTP clusters (required beyond loopback).
const SECRET: &str = "partition-test-secret-0123456789abcdef";
/// 50 strokes per second.
const PERIOD: Duration = Duration::from_millis(20);
/// Strokes: 12 s.
const TOTAL: u64 = 600;
/// The partition starts at this stroke (2 s in) ...
const CUT_AT: u64 = 100;
/// ... and lasts this long (the scenario, not a synchronisation).
const PARTITION: Duration = Duration::from_secs(3);
/// Receiving draw clients, spread over the three members.
const CLIENTS: usize = 45;
/// Display clients per member before the partition.
const DISPLAY_CLIENTS: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Redis,
    Http,
}

/// The example-display binary (built by a workspace test run; built here when missing).
async fn display_bin() -> anyhow::Result<PathBuf> {
    if let Ok(p) = thywill_testkit::process::cargo_bin("example-display") {
        return Ok(p);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("building example-display (the connection tables and presence are read from it)");
    let status = tokio::process::Command::new(cargo)
        .args(["build", "-p", "example-display", "--bin", "example-display"])
        .kill_on_drop(true)
        .status();
    let status = tokio::time::timeout(Duration::from_secs(300), status)
        .await
        .context("building example-display took over 300 s")??;
    ensure!(status.success(), "building example-display failed");
    thywill_testkit::process::cargo_bin("example-display")
}

// ---------------------------------------------------------------------------------------------
// The cluster in namespaces.
// ---------------------------------------------------------------------------------------------

/// Both clusters (draw and display) in the namespaces; fields drop in order: processes first,
/// then Redis, then the namespaces.
struct Cluster {
    draw: Vec<Member>,
    display: Vec<Member>,
    _redis: Option<HubRedis>,
    net: Net,
}

impl Cluster {
    async fn start(backend: Backend) -> anyhow::Result<Cluster> {
        let display = display_bin().await?;
        let net = Net::create(&IDS)?;
        let redis = match backend {
            Backend::Redis => Some(HubRedis::start(net.hub_addr()).await?),
            Backend::Http => None,
        };
        let list = |port: u16| -> String {
            net.hosts()
                .iter()
                .map(|h| format!("{}={}:{port}", h.id, h.cluster_addr))
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut draw_members = Vec::new();
        let mut display_members = Vec::new();
        for h in net.hosts() {
            for (program, port, cluster_port, into) in [
                (
                    PathBuf::from(DRAW),
                    DRAW_PORT,
                    DRAW_CLUSTER_PORT,
                    &mut draw_members,
                ),
                (
                    display.clone(),
                    DISPLAY_PORT,
                    DISPLAY_CLUSTER_PORT,
                    &mut display_members,
                ),
            ] {
                let mut args: Vec<String> = vec!["--host".into(), h.client_addr.to_string()];
                match (&redis, backend) {
                    (Some(r), Backend::Redis) => args.extend([
                        "--cluster".into(),
                        "redis".into(),
                        "--redis-url".into(),
                        r.url(),
                        "--cluster-members".into(),
                        IDS.join(","),
                    ]),
                    _ => args.extend([
                        "--cluster".into(),
                        "http".into(),
                        "--cluster-members".into(),
                        list(cluster_port),
                        "--cluster-secret".into(),
                        SECRET.into(),
                    ]),
                }
                args.extend(["--heartbeat-interval", "100", "--heartbeat-timeout", "400"].map(String::from));
                let m = Member::start_wrapped(&h.wrapper(), &program, &h.id, port, &args)
                    .await
                    .with_context(|| format!("starting {} in {}", program.display(), h.ns))?;
                into.push(m);
            }
        }
        all_up(&mut draw_members).await.context("draw members up")?;
        all_up(&mut display_members).await.context("display members up")?;
        Ok(Cluster {
            draw: draw_members,
            display: display_members,
            _redis: redis,
            net,
        })
    }

    fn draw_url(&self, i: usize) -> String {
        format!("ws://{}:{DRAW_PORT}/draw/ws", self.net.hosts()[i].client_addr)
    }

    fn display_url(&self, i: usize) -> String {
        format!(
            "ws://{}:{DISPLAY_PORT}/display/ws",
            self.net.hosts()[i].client_addr
        )
    }

    /// Every member process (draw and display) with its cursor.
    fn cursors(&mut self) -> Vec<usize> {
        self.draw
            .iter_mut()
            .chain(self.display.iter_mut())
            .map(|m| {
                m.proc.drain();
                m.cursor()
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Draw: strokes, the publisher, the receivers.
// ---------------------------------------------------------------------------------------------

/// A valid stroke numbered `n`, stamped with the send time.
fn stroke(n: u64) -> Value {
    json!({
        "segments": [{"x": (n % 500) as f64, "y": 1.0}, {"x": 2.0, "y": 3.0}],
        "n": n,
        "sent_us": now_us(),
    })
}

/// The publisher's strokes among delivered messages: `(n, sent_us, delivered at_us)`.
fn strokes(delivered: &[Delivered]) -> Vec<(u64, u64, u64)> {
    delivered
        .iter()
        .filter(|d| d.app == "draw")
        .filter_map(|d| {
            let n = d.data.get("n")?.as_u64()?;
            let sent = d.data.get("sent_us")?.as_u64()?;
            Some((n, sent, d.at_us))
        })
        .collect()
}

/// A client connected to `url`, subscribed to the draw channel.
async fn client(url: &str) -> anyhow::Result<ReliableClient> {
    let mut c = ReliableClient::connect(url)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    c.ready().await?;
    Ok(c)
}

/// Sends [`TOTAL`] strokes at 50 per second, then waits for every acknowledgement; `sent`
/// counts the strokes sent so far.
struct Publisher {
    task: JoinHandle<anyhow::Result<ReliableClient>>,
    sent: watch::Receiver<u64>,
}

impl Publisher {
    fn start(mut c: ReliableClient) -> Publisher {
        let (tx, sent) = watch::channel(0u64);
        let task = tokio::spawn(async move {
            let start = Instant::now();
            for n in 0..TOTAL {
                c.pump_until(start + PERIOD * n as u32).await?;
                c.send("draw", stroke(n)).await;
                tx.send_replace(n + 1);
            }
            c.until(TIMEOUT, |c| c.unacknowledged() == 0).await?;
            Ok(c)
        });
        Publisher { task, sent }
    }

    async fn reached(&mut self, n: u64) -> anyhow::Result<()> {
        tokio::time::timeout(PERIOD * n as u32 + TIMEOUT, self.sent.wait_for(|s| *s >= n))
            .await
            .context("publisher stalled")?
            .context("publisher ended")?;
        Ok(())
    }
}

/// What a receiving client ended with.
struct Outcome {
    index: usize,
    client: ReliableClient,
    got: Vec<(u64, u64, u64)>,
}

/// Pumps a receiving client until it delivered the last stroke (or `deadline`).
async fn receive(index: usize, mut c: ReliableClient, deadline: Instant) -> anyhow::Result<Outcome> {
    let mut got = Vec::new();
    loop {
        let step = (Instant::now() + Duration::from_millis(100)).min(deadline);
        c.pump_until(step)
            .await
            .map_err(|e| anyhow::anyhow!("client {index}: {e}"))?;
        got.extend(strokes(&c.take_delivered()));
        if got.last().map(|g| g.0) == Some(TOTAL - 1) {
            return Ok(Outcome {
                index,
                client: c,
                got,
            });
        }
        if Instant::now() >= deadline {
            bail!(
                "client {index} (tab {}, on {}): {} strokes by the deadline, last {:?}; counters {:?}; streams {}",
                c.tab(),
                c.member(),
                got.len(),
                got.last(),
                c.counters(),
                c.streams().describe()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Display: clients whose connections are tracked, and probes that read the tables.
// ---------------------------------------------------------------------------------------------

/// A display client kept connected (read all along, so pings are answered) until closed.
struct DisplayClient {
    member: usize,
    connection: String,
    session: String,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), String>>,
}

impl DisplayClient {
    async fn connect(url: &str, member: usize) -> anyhow::Result<DisplayClient> {
        let mut ws = WsClient::connect(url)
            .await
            .with_context(|| format!("display client connecting to {url}"))?;
        let (connection, session) = match &ws.welcome {
            thywill::core::protocol::ServerFrame::Welcome {
                connection, session, ..
            } => (connection.to_string(), session.to_string()),
            other => bail!("not a welcome: {other:?}"),
        };
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stopped.changed() => {
                        ws.close().await;
                        return Ok(());
                    }
                    r = ws.recv_within(Duration::from_secs(3600)) => match r {
                        Ok(_) | Err(WsError::Timeout) => {}
                        Err(e) => return Err(e.to_string()),
                    },
                }
            }
        });
        Ok(DisplayClient {
            member,
            connection,
            session,
            stop,
            task,
        })
    }

    /// Closes the connection (a close frame: the member sees the disconnection at once).
    async fn close(self) -> anyhow::Result<()> {
        self.stop.send_replace(true);
        tokio::time::timeout(TIMEOUT, self.task)
            .await
            .context("display client did not close")??
            .map_err(|e| anyhow::anyhow!("display client {}: {e}", self.connection))
    }
}

/// What one member's probe read: the connection table (member → ids) and the sessions present
/// in the presence channel, without the probe's own.
#[derive(Debug, PartialEq, Eq)]
struct View {
    connections: BTreeMap<String, BTreeSet<String>>,
    present: BTreeSet<String>,
}

/// Connects a probe to a display member and reads its view, without the probes' own entries:
/// `probes` collects the connection ids (and sessions) of every probe, as a probe's
/// disconnection reaches the other members a moment after it closed.
async fn probe(url: &str, probes: &mut BTreeSet<String>) -> anyhow::Result<View> {
    use thywill::core::protocol::ServerFrame;
    let mut ws = WsClient::connect(url).await?;
    let (me, my_session) = match &ws.welcome {
        ServerFrame::Welcome {
            connection, session, ..
        } => (connection.to_string(), session.to_string()),
        other => bail!("not a welcome: {other:?}"),
    };
    probes.insert(me);
    probes.insert(my_session);
    let mut connections = None;
    let mut present = None;
    let deadline = Instant::now() + Duration::from_secs(5);
    while connections.is_none() || present.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = ws.recv_within(left).await.map_err(|e| {
            anyhow::anyhow!("probe of {url}: {e} (table {connections:?}, presence {present:?})")
        })?;
        let ServerFrame::Msg { data, .. } = frame else {
            continue;
        };
        if data["type"] == "connectionList" {
            let mut table = BTreeMap::new();
            for (member, ids) in data["connections"].as_object().context("connections")? {
                let ids: BTreeSet<String> = ids
                    .as_array()
                    .context("ids")?
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .filter(|id| !probes.contains(id))
                    .collect();
                table.insert(member.clone(), ids);
            }
            connections = Some(table);
        } else if data["presence"] == "state" && data["channel"] == "display:presence" {
            present = Some(
                data["sessions"]
                    .as_array()
                    .context("sessions")?
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .filter(|s| !probes.contains(s))
                    .collect(),
            );
        }
    }
    ws.close().await;
    Ok(View {
        connections: connections.unwrap_or_default(),
        present: present.unwrap_or_default(),
    })
}

/// The view every member should have of `clients`.
fn expected(clients: &[DisplayClient]) -> View {
    let mut connections: BTreeMap<String, BTreeSet<String>> =
        IDS.iter().map(|m| ((*m).to_owned(), BTreeSet::new())).collect();
    for c in clients {
        connections
            .entry(IDS[c.member].to_owned())
            .or_default()
            .insert(c.connection.clone());
    }
    View {
        connections,
        present: clients.iter().map(|c| c.session.clone()).collect(),
    }
}

/// The differences of `got` from `want`: ghosts (listed, not connected) and missing entries.
fn differences(got: &View, want: &View) -> Vec<String> {
    let mut out = Vec::new();
    for m in IDS {
        let g = got.connections.get(m).cloned().unwrap_or_default();
        let w = want.connections.get(m).cloned().unwrap_or_default();
        let ghosts: Vec<&String> = g.difference(&w).collect();
        let missing: Vec<&String> = w.difference(&g).collect();
        if !ghosts.is_empty() {
            out.push(format!("ghost connections of {m}: {ghosts:?}"));
        }
        if !missing.is_empty() {
            out.push(format!("missing connections of {m}: {missing:?}"));
        }
    }
    let ghosts: Vec<&String> = got.present.difference(&want.present).collect();
    let missing: Vec<&String> = want.present.difference(&got.present).collect();
    if !ghosts.is_empty() {
        out.push(format!("ghost sessions present: {ghosts:?}"));
    }
    if !missing.is_empty() {
        out.push(format!("missing sessions: {missing:?}"));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The run.
// ---------------------------------------------------------------------------------------------

/// For every member and every other one it saw down after `cursors`: waits until it saw it up
/// again. Returns the detection figures (who saw whom down and up, ms after `cut_ms`).
async fn wait_detection(
    members: &mut [Member],
    cursors: &[usize],
    cut_ms: u64,
) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for (j, m) in members.iter_mut().enumerate() {
        m.proc.drain();
        let me = m.id.clone();
        for other in IDS.iter().filter(|o| **o != me) {
            let downs = m.events(|v| is(v, "member_down", other));
            let Some(down) = downs
                .iter()
                .find(|v| v["at_ms"].as_u64().unwrap_or(0) >= cut_ms)
                .cloned()
            else {
                continue;
            };
            let since = cursors[j];
            let down_at = down["at_ms"].as_u64().unwrap_or(0);
            let up = m
                .wait_event(since, TIMEOUT, |v| {
                    is(v, "member_up", other) && v["at_ms"].as_u64().unwrap_or(0) >= down_at
                })
                .await
                .with_context(|| format!("{} never saw {other} up again", m.id))?;
            out.push(format!(
                "{} saw {other} down at +{} ms, up at +{} ms",
                m.id,
                down_at.saturating_sub(cut_ms),
                up["at_ms"].as_u64().unwrap_or(0).saturating_sub(cut_ms)
            ));
        }
    }
    Ok(out)
}

async fn partition_run(backend: Backend) -> anyhow::Result<()> {
    if let Err(why) = Net::available() {
        println!("SKIPPED partition test ({backend:?}): {why}");
        eprintln!("SKIPPED partition test ({backend:?}): {why}");
        return Ok(());
    }
    let t0 = Instant::now();
    let mut cluster = Cluster::start(backend).await?;
    let draw_urls: Vec<String> = (0..3).map(|i| cluster.draw_url(i)).collect();
    eprintln!(
        "{backend:?}: 3 draw and 3 display members up in namespaces in {:?}",
        t0.elapsed()
    );

    // Receivers: client i on member i % 3, reconnecting by itself over all three.
    let started = Instant::now();
    let deadline = started + PERIOD * TOTAL as u32 + Duration::from_secs(30);
    let mut tasks = Vec::new();
    for batch in (0..CLIENTS).collect::<Vec<_>>().chunks(15) {
        let connecting: Vec<_> = batch
            .iter()
            .map(|&i| {
                let url = draw_urls[i % 3].clone();
                tokio::spawn(async move { client(&url).await })
            })
            .collect();
        for (&i, c) in batch.iter().zip(connecting) {
            let mut c = c.await??;
            let own = i % 3;
            c.auto_reconnect((0..3).map(|k| draw_urls[(own + k) % 3].clone()).collect());
            tasks.push(tokio::spawn(receive(i, c, deadline)));
        }
    }
    let mut displays = Vec::new();
    for m in 0..3 {
        for _ in 0..DISPLAY_CLIENTS {
            displays.push(DisplayClient::connect(&cluster.display_url(m), m).await?);
        }
    }

    let mut pubc = client(&draw_urls[0]).await?;
    pubc.auto_reconnect(vec![draw_urls[0].clone()]);
    let mut publisher = Publisher::start(pubc);
    let publishing_us = now_us();

    // The partition: gamma's cluster link goes down.
    publisher.reached(CUT_AT).await?;
    let cursors = cluster.cursors();
    let cut_ms = now_ms();
    let cut_us = now_us();
    cluster.net.cut(IDS[CUT])?;
    let cut_instant = Instant::now();
    eprintln!("{backend:?}: gamma's cluster link down");
    // While it lasts, display clients come and go on both sides.
    let mut closed = Vec::new();
    for m in [CUT, 0] {
        let k = displays
            .iter()
            .position(|d| d.member == m)
            .context("a display client")?;
        let d = displays.remove(k);
        closed.push(d.connection.clone());
        d.close().await?;
        displays.push(DisplayClient::connect(&cluster.display_url(m), m).await?);
    }
    tokio::time::sleep_until(cut_instant + PARTITION).await;
    cluster.net.heal(IDS[CUT])?;
    let heal_us = now_us();
    eprintln!("{backend:?}: gamma's cluster link up again");

    let pubc = publisher.task.await??;
    let mut outcomes = Vec::new();
    let mut failures = Vec::new();
    for t in tasks {
        match t.await? {
            Ok(o) => outcomes.push(o),
            Err(e) => failures.push(e.to_string()),
        }
    }

    // Detection ran (each member saw the others it lost up again), then the tables converge.
    let mut detection = wait_detection(&mut cluster.draw, &cursors[..3], cut_ms).await?;
    detection.extend(
        wait_detection(&mut cluster.display, &cursors[3..], cut_ms)
            .await?
            .into_iter()
            .map(|l| format!("display: {l}")),
    );
    let app_down: Vec<String> = cluster
        .draw
        .iter_mut()
        .flat_map(|m| m.events(|v| v["event"] == "app_member_down" || v["event"] == "gap"))
        .filter(|v| v["at_ms"].as_u64().unwrap_or(0) >= cut_ms)
        .map(|v| v.to_string())
        .collect();
    eprintln!("{backend:?}: detection: {detection:?}; draw app/gap events: {app_down:?}");

    // Display clients whose connection ended by itself are not connected any more.
    let mut live = Vec::new();
    for d in displays {
        if d.task.is_finished() {
            failures.push(format!(
                "display client {} on {} was disconnected: {:?}",
                d.connection,
                IDS[d.member],
                d.task.await
            ));
        } else {
            live.push(d);
        }
    }
    let want = expected(&live);
    let converge_deadline = Instant::now() + Duration::from_secs(15);
    let converge_start = Instant::now();
    let mut probes = BTreeSet::new();
    let mut first: Option<Vec<String>> = None;
    let mut rounds = 0;
    let mut last = Vec::new();
    let mut converged = false;
    loop {
        let mut diffs = Vec::new();
        for (m, id) in IDS.iter().enumerate() {
            match probe(&cluster.display_url(m), &mut probes).await {
                Ok(v) => diffs.extend(differences(&v, &want).into_iter().map(|d| format!("{id}: {d}"))),
                Err(e) => diffs.push(format!("{id}: {e}")),
            }
        }
        rounds += 1;
        if diffs.is_empty() {
            converged = true;
            break;
        }
        if first.is_none() {
            first = Some(diffs.clone());
        }
        last = diffs;
        if Instant::now() >= converge_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!(
        "{backend:?}: connection tables and presence {} ({:?} after detection, {rounds} rounds of probes); \
         closed during the partition: {closed:?}; first differences seen: {first:?}",
        if converged {
            "match the connected clients"
        } else {
            "do NOT match"
        },
        converge_start.elapsed()
    );
    if !converged {
        failures.push(format!("after detection, within 15 s: {}", last.join("; ")));
    }

    // Every membership change seen since the cut (flapping shows here).
    let mut changes = Vec::new();
    for (kind, ms) in [("draw", &mut cluster.draw), ("display", &mut cluster.display)] {
        for m in ms.iter_mut() {
            let seen: Vec<String> = m
                .events(|v| v["event"] == "member_down" || v["event"] == "member_up")
                .iter()
                .filter(|v| v["at_ms"].as_u64().unwrap_or(0) >= cut_ms)
                .map(|v| {
                    format!(
                        "{}{}+{}",
                        v["member"].as_str().unwrap_or("?"),
                        if v["event"] == "member_up" { "↑" } else { "↓" },
                        v["at_ms"].as_u64().unwrap_or(0).saturating_sub(cut_ms)
                    )
                })
                .collect();
            changes.push(format!("{kind} {}: {}", m.id, seen.join(" ")));
        }
    }
    eprintln!(
        "{backend:?}: membership changes since the cut (ms): {}",
        changes.join("; ")
    );

    // Delivery figures and guarantees.
    let mut exact = 0usize;
    let mut told = 0usize;
    let mut missing_told = 0u64;
    let mut dropped_duplicates = 0u64;
    let mut continuity_lost = 0u64;
    let mut resumes = 0u64;
    let mut reconnected = 0usize;
    let mut max_recovery = Duration::ZERO;
    let mut max_latency = 0u64;
    for o in &outcomes {
        let ns: Vec<u64> = o.got.iter().map(|g| g.0).collect();
        let c = o.client.counters();
        dropped_duplicates += c.order.duplicates_dropped;
        continuity_lost += c.continuity_lost;
        resumes += c.resumes_sent;
        if c.reconnects > 0 {
            reconnected += 1;
        }
        // Caught up: when the stroke sent last before the heal was delivered.
        if let Some((_, _, at)) = o.got.iter().rev().find(|(_, sent, _)| *sent < heal_us) {
            let after_heal = Duration::from_micros(at.saturating_sub(heal_us));
            max_recovery = max_recovery.max(after_heal);
        }
        max_latency = max_latency.max(
            o.got
                .iter()
                .map(|(_, sent, at)| at.saturating_sub(*sent))
                .max()
                .unwrap_or(0),
        );
        let in_order = ns.windows(2).all(|w| w[1] > w[0]);
        if c.continuity_lost == 0 {
            if ns.iter().copied().eq(0..TOTAL) {
                exact += 1;
            } else {
                let seen: BTreeSet<u64> = ns.iter().copied().collect();
                let first_missing = (0..TOTAL).find(|n| !seen.contains(n));
                failures.push(format!(
                    "client {} (on {}, streams {}): {} strokes of {TOTAL}, in order {in_order}, first missing {first_missing:?}, \
                     NOT told of a loss; counters {c:?}; connections {:?}",
                    o.index,
                    o.client.member(),
                    o.client.streams().describe(),
                    ns.len(),
                    o.client.events()
                ));
            }
        } else {
            told += 1;
            missing_told += TOTAL - ns.len() as u64;
            if !in_order {
                failures.push(format!(
                    "client {} (told of a loss {:?}): strokes not once and in order",
                    o.index,
                    o.client.streams().losses()
                ));
            }
        }
    }
    let gamma_clients: Vec<usize> = outcomes
        .iter()
        .filter(|o| o.index % 3 == CUT)
        .map(|o| {
            o.client
                .events()
                .iter()
                .filter(|e| matches!(e, ConnEvent::Connected { .. }))
                .count()
        })
        .collect();
    eprintln!(
        "{backend:?} partition ({:?}, gamma cut at +{} ms for {PARTITION:?}): {} clients × {TOTAL} strokes: \
         {exact} got every stroke once and in order, {told} were told continuity was lost ({continuity_lost} continuity_lost frames, \
         {missing_told} strokes missed by them); frames dropped as duplicates by the clients {dropped_duplicates}; \
         resume requests {resumes}; clients that reconnected {reconnected} (connections of gamma's clients {gamma_clients:?}); \
         longest catch-up after the heal {max_recovery:?}; max latency {:.1} ms; publisher: {:?}",
        started.elapsed(),
        cut_us.saturating_sub(publishing_us) / 1000,
        outcomes.len(),
        max_latency as f64 / 1000.0,
        pubc.counters()
    );
    for m in cluster.draw.iter_mut().chain(cluster.display.iter_mut()) {
        if !m.proc.is_running() {
            failures.push(format!("{} exited", m.id));
        }
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_partitioned_member_loses_nothing_silently_and_leaves_no_ghosts() -> anyhow::Result<()> {
    partition_run(Backend::Redis).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_a_partitioned_member_loses_nothing_silently_and_leaves_no_ghosts() -> anyhow::Result<()> {
    partition_run(Backend::Http).await
}
