//! Multi-process tests of the Draw example: real `example-draw` processes clustered over a real
//! `redis-server` or over HTTP, on free loopback ports. Members report their cluster events as
//! JSON lines on stdout (see `example_support::cluster`), which the tests read.

mod http;
mod redis;
mod single;
mod tracker;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use thywill::protocol::ServerFrame;
use thywill_testkit::WsClient;
use thywill_testkit::process::Process;

/// Heartbeat timeout + one interval: the bound on reporting a killed member down.
pub const DETECTION: Duration = Duration::from_millis(500 + 200);
/// Scheduling slack on a loaded 2-core machine (three debug processes, Redis, the test).
pub const SLACK: Duration = Duration::from_millis(300);

/// One member process.
#[derive(Debug)]
pub struct Member {
    /// Member id.
    pub id: String,
    /// Web port.
    pub port: u16,
    /// The process.
    pub proc: Process,
    args: Vec<String>,
}

impl Member {
    /// Starts `example-draw` with `args` plus `--port` and `--member`, and waits until it listens.
    pub async fn start(id: &str, port: u16, args: &[String]) -> anyhow::Result<Member> {
        let mut all = vec![
            "--port".to_owned(),
            port.to_string(),
            "--member".to_owned(),
            id.to_owned(),
        ];
        all.extend(args.iter().cloned());
        let mut proc = Process::spawn(env!("CARGO_BIN_EXE_example-draw"), &all)?;
        proc.listening_url()
            .await
            .with_context(|| format!("{id} did not start"))?;
        Ok(Member {
            id: id.to_owned(),
            port,
            proc,
            args: args.to_vec(),
        })
    }

    /// Kills the process (`kill -9`) and returns the wall-clock time of the kill in ms.
    pub fn kill(&mut self) -> u64 {
        let at = now_ms();
        self.proc.kill();
        at
    }

    /// Starts the member again with the same arguments.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let again = Member::start(&self.id, self.port, &self.args).await?;
        *self = again;
        Ok(())
    }

    /// The WebSocket URL.
    pub fn ws(&self) -> String {
        format!("ws://127.0.0.1:{}/draw/ws", self.port)
    }

    /// How many stdout lines were read so far (a cursor for [`Member::wait_event`]).
    pub fn cursor(&self) -> usize {
        self.proc.seen().len()
    }

    /// Waits for a JSON event line satisfying `pred`, among lines from `since` on.
    pub async fn wait_event(
        &mut self,
        since: usize,
        wait: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        for line in self.proc.seen().iter().skip(since) {
            if let Ok(v) = serde_json::from_str::<Value>(line)
                && pred(&v)
            {
                return Ok(v);
            }
        }
        let waited = self
            .proc
            .wait_line_within(wait, |l| serde_json::from_str::<Value>(l).is_ok_and(|v| pred(&v)))
            .await;
        let line = match waited {
            Ok(l) => l,
            Err(e) => {
                let recent: Vec<&String> = self.proc.seen().iter().rev().take(8).collect();
                bail!("on {}: {e}; last lines: {recent:?}", self.id);
            }
        };
        Ok(serde_json::from_str(&line)?)
    }

    /// Every event line read so far satisfying `pred`.
    pub fn events(&mut self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.proc.drain();
        self.proc
            .seen()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| pred(v))
            .collect()
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Whether `v` is the event `event` about `member`.
pub fn is(v: &Value, event: &str, member: &str) -> bool {
    v["event"] == event && v["member"] == member
}

/// Waits until every member reports every other one up.
pub async fn all_up(members: &mut [Member]) -> anyhow::Result<()> {
    let ids: Vec<String> = members.iter().map(|m| m.id.clone()).collect();
    for m in members.iter_mut() {
        let me = m.id.clone();
        for other in ids.iter().filter(|o| **o != me) {
            m.wait_event(0, thywill_testkit::TIMEOUT, |v| is(v, "member_up", other))
                .await?;
        }
    }
    Ok(())
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
