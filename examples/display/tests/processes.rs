//! Ghost-free tracking after a crash, with real member processes over a real Redis: when a
//! member is killed (`kill -9`), every survivor drops its connections from the client tracker
//! and its sessions from presence within the failure-detection time.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use thywill::protocol::ServerFrame;
use thywill_testkit::members::{Member, all_up, is, now_ms};
use thywill_testkit::redis::RedisServer;
use thywill_testkit::{TIMEOUT, WsClient, free_port};

const DISPLAY: &str = env!("CARGO_BIN_EXE_example-display");
/// Heartbeat interval and timeout given to the members.
const INTERVAL_MS: u64 = 100;
const TIMEOUT_MS: u64 = 300;
/// Heartbeat timeout + one interval: the bound on reporting a killed member down.
const DETECTION: Duration = Duration::from_millis(TIMEOUT_MS + INTERVAL_MS);
/// Scheduling slack on a loaded 2-core machine (three debug processes, Redis, the test).
const SLACK: Duration = Duration::from_millis(400);

/// A display client that keeps the presence of the display's presence channel.
struct Watcher {
    ws: WsClient,
    present: BTreeSet<String>,
    list: Option<Value>,
}

impl Watcher {
    async fn connect(url: &str) -> anyhow::Result<Watcher> {
        Ok(Watcher {
            ws: WsClient::connect(url).await?,
            present: BTreeSet::new(),
            list: None,
        })
    }

    /// Reads messages until `done(self)` holds, within `wait`.
    async fn until(&mut self, wait: Duration, done: impl Fn(&Watcher) -> bool) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + wait;
        while !done(self) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = self.ws.recv_within(left).await.map_err(|e| {
                anyhow::anyhow!(
                    "{e}; presence {:?}, connection list {:?}",
                    self.present,
                    self.list
                )
            })?;
            let ServerFrame::Msg { data, .. } = frame else {
                continue;
            };
            match data["presence"].as_str() {
                Some("state") => {
                    self.present = serde_json::from_value(data["sessions"].clone())?;
                }
                Some("join") => {
                    self.present
                        .insert(data["session"].as_str().unwrap_or_default().to_owned());
                }
                Some("leave") => {
                    self.present.remove(data["session"].as_str().unwrap_or_default());
                }
                _ if data["type"] == "connectionList" => self.list = Some(data["connections"].clone()),
                _ => {}
            }
        }
        Ok(())
    }
}

/// The connection ids a fresh client of `url` is told `member` holds, and the presence it is
/// told.
async fn fresh_view(url: &str, member: &str) -> anyhow::Result<(Vec<String>, BTreeSet<String>)> {
    let mut w = Watcher::connect(url).await?;
    let me = w.ws.connection.to_string();
    w.until(TIMEOUT, |w| w.list.is_some() && w.present.contains(&me))
        .await?;
    let list = w.list.take().context("no connection list")?;
    let ids: Vec<String> =
        serde_json::from_value(list[member].clone()).context("member missing from the list")?;
    Ok((ids, w.present))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ghost_connection_or_presence_outlives_failure_detection() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let args: Vec<String> = [
        "--cluster",
        "redis",
        "--redis-url",
        &redis.url(),
        "--cluster-members",
        "alpha,beta,gamma",
        "--redis-prefix",
        "test:display:",
        "--heartbeat-interval",
        &INTERVAL_MS.to_string(),
        "--heartbeat-timeout",
        &TIMEOUT_MS.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut members = Vec::new();
    for id in ["alpha", "beta", "gamma"] {
        members.push(Member::start(DISPLAY, id, free_port(), &args).await?);
    }
    all_up(&mut members).await?;

    let mut watchers = vec![
        Watcher::connect(&members[0].ws("/display")).await?,
        Watcher::connect(&members[1].ws("/display")).await?,
    ];
    let on_gamma = [
        WsClient::connect(&members[2].ws("/display")).await?,
        WsClient::connect(&members[2].ws("/display")).await?,
    ];
    // Without session cookies every connection is its own session.
    let ghosts: Vec<String> = on_gamma.iter().map(|c| c.connection.to_string()).collect();
    for w in &mut watchers {
        w.until(TIMEOUT, |w| ghosts.iter().all(|g| w.present.contains(g)))
            .await?;
    }
    // Every survivor's tracker has them.
    for m in &members[..2] {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let (ids, _) = fresh_view(&m.ws("/display"), "gamma").await?;
            if ghosts.iter().all(|g| ids.contains(g)) {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("{}'s tracker lacks gamma's connections: {ids:?}", m.id);
            }
        }
    }

    let cursors: Vec<usize> = members.iter().map(Member::cursor).collect();
    let killed_at = members[2].kill();
    for (w, m) in watchers.iter_mut().zip(&members) {
        w.until(TIMEOUT, |w| !ghosts.iter().any(|g| w.present.contains(g)))
            .await?;
        let took = Duration::from_millis(now_ms().saturating_sub(killed_at));
        eprintln!("{}: gamma's sessions left presence {took:?} after the kill", m.id);
        anyhow::ensure!(
            took <= DETECTION + SLACK,
            "{}: gamma's sessions left presence after {took:?} (bound {DETECTION:?} + slack {SLACK:?})",
            m.id
        );
    }
    for (i, m) in members[..2].iter_mut().enumerate() {
        let down = m
            .wait_event(cursors[i], TIMEOUT, |v| is(v, "member_down", "gamma"))
            .await?;
        let took = down["at_ms"]
            .as_u64()
            .unwrap_or(u64::MAX)
            .saturating_sub(killed_at);
        eprintln!("{} reported gamma down after {took} ms", m.id);
        // Nothing of gamma is left in the survivor's tracker or presence.
        let (ids, present) = fresh_view(&m.ws("/display"), "gamma").await?;
        anyhow::ensure!(ids.is_empty(), "{}: ghost connections {ids:?}", m.id);
        anyhow::ensure!(
            !ghosts.iter().any(|g| present.contains(g)),
            "{}: ghost presence {present:?}",
            m.id
        );
    }
    for m in &mut members[..2] {
        anyhow::ensure!(m.proc.is_running(), "{} exited", m.id);
    }
    Ok(())
}
