//! Multi-process tests of the Draw example: real `example-draw` processes clustered over a real
//! `redis-server`, over HTTP, or over a real `nats-server` (with a backend written outside the
//! framework), on free loopback ports. Members report their cluster events as JSON lines on
//! stdout (see `example_support::cluster`), which the tests read.

mod http;
mod nats;
mod redis;
mod single;
mod tracker;

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use thywill::protocol::ServerFrame;
use thywill_testkit::WsClient;
pub use thywill_testkit::members::{Member, all_up, is};

/// Heartbeat timeout + one interval: the bound on reporting a killed member down.
pub const DETECTION: Duration = Duration::from_millis(500 + 200);
/// Scheduling slack on a loaded 2-core machine (three debug processes, Redis, the test).
pub const SLACK: Duration = Duration::from_millis(300);

/// The base path the Draw example is served under.
pub const BASE: &str = "/draw";

/// Starts an `example-draw` member with `--port port --member id` and `args`, and waits until
/// it listens.
pub async fn start_member(id: &str, port: u16, args: &[String]) -> anyhow::Result<Member> {
    Member::start(env!("CARGO_BIN_EXE_example-draw"), id, port, args).await
}

/// A stroke with an id.
pub fn stroke(id: u64) -> Value {
    json!({"segments": [{"x": 10, "y": 10}, {"x": 20.5, "y": 30}], "id": id})
}

/// The next draw message on `client`, within `wait`.
pub async fn next_stroke(client: &mut WsClient, wait: Duration) -> anyhow::Result<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match client.recv_within(left).await {
            Ok(ServerFrame::Msg { app, data, .. }) if app.as_str() == "draw" => return Ok(data),
            Ok(_) => continue,
            Err(e) => bail!("no stroke: {e}"),
        }
    }
}

/// Sends strokes from `from` until `to` receives one (a connection joins the draw channel
/// in the application's connection hook, just after its welcome frame: the first stroke may
/// precede it). Returns the id received.
pub async fn stroke_reaches(from: &mut WsClient, to: &mut WsClient, first_id: u64) -> anyhow::Result<u64> {
    for id in first_id..first_id + 20 {
        from.send("draw", stroke(id))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Ok(data) = next_stroke(to, Duration::from_millis(500)).await {
            let got = data["id"].as_u64().context("stroke without id")?;
            return Ok(got);
        }
    }
    bail!("no stroke crossed members")
}

/// Connects a protocol client.
pub async fn connect(url: &str) -> anyhow::Result<WsClient> {
    WsClient::connect(url)
        .await
        .map_err(|e| anyhow::anyhow!("{url}: {e}"))
}

/// Kills `victim` and checks that each of `others` reports it down within the bound, with
/// `designated` true on `designated` only, and that the designated member's application is
/// told. Returns the detection times (ms).
pub async fn kill_and_detect(
    members: &mut [Member],
    victim: usize,
    designated: &str,
) -> anyhow::Result<Vec<u64>> {
    let cursors: Vec<usize> = members.iter().map(Member::cursor).collect();
    let victim_id = members[victim].id.clone();
    let killed_at = members[victim].kill();
    let mut times = Vec::new();
    for (i, m) in members.iter_mut().enumerate() {
        if i == victim {
            continue;
        }
        let v = m
            .wait_event(cursors[i], thywill_testkit::TIMEOUT, |v| {
                is(v, "member_down", &victim_id)
            })
            .await?;
        let at = v["at_ms"].as_u64().context("at_ms")?;
        let took = at.saturating_sub(killed_at);
        eprintln!("{} reported {victim_id} down after {took} ms", m.id);
        anyhow::ensure!(
            Duration::from_millis(took) <= DETECTION + SLACK,
            "{}: {victim_id} reported down after {took} ms (bound {DETECTION:?} + slack {SLACK:?})",
            m.id
        );
        let flagged = v["designated"] == true;
        anyhow::ensure!(
            flagged == (m.id == designated),
            "{}: designated = {flagged}",
            m.id
        );
        if m.id == designated {
            m.wait_event(cursors[i], thywill_testkit::TIMEOUT, |v| {
                is(v, "app_member_down", &victim_id)
            })
            .await?;
        }
        times.push(took);
    }
    Ok(times)
}

/// Restarts `victim` and checks that the others report it up again.
pub async fn restart_and_detect(members: &mut [Member], victim: usize) -> anyhow::Result<()> {
    let cursors: Vec<usize> = members.iter().map(Member::cursor).collect();
    members[victim].restart().await?;
    let victim_id = members[victim].id.clone();
    let ids: Vec<String> = members.iter().map(|m| m.id.clone()).collect();
    for (i, m) in members.iter_mut().enumerate() {
        if i != victim {
            m.wait_event(cursors[i], thywill_testkit::TIMEOUT, |v| {
                is(v, "member_up", &victim_id)
            })
            .await?;
        } else {
            // The restarted member sees the others too (a member it has not heard from yet
            // would go from unknown to down silently).
            for other in ids.iter().filter(|o| **o != victim_id) {
                m.wait_event(0, thywill_testkit::TIMEOUT, |v| is(v, "member_up", other))
                    .await?;
            }
        }
    }
    Ok(())
}

/// The cluster tasks member `m` has handled so far (`thywill_cluster_tasks_total` with
/// `direction="in"`, from its metrics page).
pub async fn tasks_in(m: &Member) -> anyhow::Result<u64> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], m.port));
    let (status, _, body) = thywill_testkit::hostile::http_get(addr, &format!("{BASE}/metrics")).await?;
    anyhow::ensure!(status == 200, "metrics of {}: status {status}", m.id);
    body.lines()
        .find(|l| l.starts_with("thywill_cluster_tasks_total{") && l.contains("direction=\"in\""))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .with_context(|| format!("no cluster tasks in the metrics of {}", m.id))
}

/// Interest routing, end to end: strokes drawn on a page on `members[0]` reach a page on
/// `members[1]`, each once and in order, and `members[2]`, where no page is open, handles none
/// of them.
pub async fn strokes_skip_members_without_pages(members: &[Member]) -> anyhow::Result<()> {
    let mut on_alpha = connect(&members[0].ws(BASE)).await?;
    let mut on_beta = connect(&members[1].ws(BASE)).await?;
    stroke_reaches(&mut on_alpha, &mut on_beta, 1).await?;
    // Whatever was sent before is through once the marker is.
    on_alpha
        .send("draw", stroke(999))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    while next_stroke(&mut on_beta, thywill_testkit::TIMEOUT).await?["id"] != 999 {}
    let (beta_before, gamma_before) = (tasks_in(&members[1]).await?, tasks_in(&members[2]).await?);
    const N: u64 = 50;
    for id in 1000..1000 + N {
        on_alpha
            .send("draw", stroke(id))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    for id in 1000..1000 + N {
        let got = next_stroke(&mut on_beta, thywill_testkit::TIMEOUT).await?;
        anyhow::ensure!(got["id"] == id, "expected stroke {id}, got {got}");
    }
    let (beta_after, gamma_after) = (tasks_in(&members[1]).await?, tasks_in(&members[2]).await?);
    anyhow::ensure!(
        beta_after >= beta_before + N,
        "beta handled {} tasks for {N} strokes",
        beta_after - beta_before
    );
    // Nothing else happens in the cluster meanwhile (no page opens or closes).
    anyhow::ensure!(
        gamma_after == gamma_before,
        "gamma, with no page open, handled {} tasks during {N} strokes",
        gamma_after - gamma_before
    );
    Ok(())
}
